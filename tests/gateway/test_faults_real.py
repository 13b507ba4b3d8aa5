"""The issue's fault tests with every part a real process on loopback: two upstream
replicas, a Taxi module service, and gateway processes with their own settings.

- a 50%-failing upstream: at most 1.2 upstream requests per client request, and the
  retries turn failures into successes; no retry on 4xx or an unkeyed POST;
- the breaker opens after 3 failures, rejects without calling the upstream, lets a
  trial call through after its open time and closes on success;
- keys: missing, wrong, malformed -> 401; a key without the service's scope -> 403; a
  key revoked from the command line while the gateway runs -> 401 (tenants kept apart
  by the service itself: test_trust_boundary.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmagentos._processes import start_server, stop_processes
from llmagentos.gateway import ApiKeyStore

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"
# Auth on needs the secret the gateway signs principals with (the services verify them).
SIGNED = {**os.environ, "LLMAGENTOS_PRINCIPAL_SECRET": "faults-test-principal-secret-0123"}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[list[str]]:
    started = [start_server(["llmagentos.gateway.testing"], port_flag=None) for _ in range(2)]
    yield [url for _, url in started]
    stop_processes(*(process for process, _ in started))


def _calls(upstreams: list[str]) -> int:
    """Requests the upstream replicas have served, all routes counted."""
    return sum(httpx.get(f"{url}/calls").json()["calls"] for url in upstreams)


def _gateway(
    tmp: Path, text: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    config = tmp / "gateway.toml"
    config.write_text(text)
    return start_server(["llmagentos", "gateway", str(config)], env=env)


def test_retries_stay_in_budget_and_never_touch_4xx_or_posts(
    upstreams: list[str], tmp_path: Path
) -> None:
    process, gateway = _gateway(
        tmp_path,
        "[gateway]\nretry_floor_per_second = 0\nbreaker_failures = 1000\n"
        "eject_after_failures = 1000\nhealth_interval = 0\n\n"
        f'[[services]]\nname = "up"\nreplicas = {json.dumps(upstreams)}\n',
    )
    try:
        with httpx.Client(base_url=gateway, timeout=10) as client:
            before = _calls(upstreams)
            replies = [client.get("/up/flaky") for _ in range(200)]
            upstream_requests = _calls(upstreams) - before
            assert upstream_requests / 200 <= 1.2  # the retry budget holds
            assert upstream_requests > 200  # and the gateway did retry
            assert sum(r.status_code == 200 for r in replies) > 100  # ...to some effect
            before = _calls(upstreams)
            assert [client.get("/up/status/418").status_code for _ in range(10)] == [418] * 10
            assert [client.post("/up/status/503").status_code for _ in range(10)] == [503] * 10
            assert _calls(upstreams) - before == 20  # one upstream request per client request
    finally:
        stop_processes(process)


def test_the_breaker_opens_rejects_half_opens_and_closes(
    upstreams: list[str], tmp_path: Path
) -> None:
    process, gateway = _gateway(
        tmp_path,
        "[gateway]\nretry_ratio = 0\nretry_floor_per_second = 0\nbreaker_failures = 3\n"
        "breaker_open_seconds = 1\neject_after_failures = 1000\nhealth_interval = 0\n\n"
        f'[[services]]\nname = "up"\nreplicas = {json.dumps(upstreams)}\n',
    )
    try:
        with httpx.Client(base_url=gateway, timeout=10) as client:
            before = _calls(upstreams)
            assert [client.get("/up/status/500").status_code for _ in range(3)] == [500] * 3
            assert _calls(upstreams) - before == 3
            rejected = [client.get("/up/echo") for _ in range(5)]  # open: nothing goes out
            assert {r.status_code for r in rejected} == {503}
            assert "circuit open" in rejected[0].json()["detail"]
            assert int(rejected[0].headers["retry-after"]) >= 1
            assert _calls(upstreams) - before == 3
            metrics = client.get("/metrics").text
            assert 'llmagentos_gateway_breaker_open{service="up"} 1.0' in metrics
            time.sleep(1.2)  # the open time passes: one trial call is let through
            assert client.get("/up/echo").status_code == 200
            assert _calls(upstreams) - before == 4
            assert [client.get("/up/echo").status_code for _ in range(3)] == [200] * 3  # closed
            assert 'breaker_open{service="up"} 0.0' in client.get("/metrics").text
    finally:
        stop_processes(process)


def test_keys_scopes_and_revocation(upstreams: list[str], tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path / "keys.db")
    acme = keys.create_key("acme", ["up:*", "taxi:*"])
    globex = keys.create_key("globex", ["taxi:*"])
    keys.close()
    taxi, taxi_url = start_server(["llmagentos", "serve", str(TAXI)], env=SIGNED)
    try:
        process, gateway = _gateway(
            tmp_path,
            '[gateway]\nkeys = "keys.db"\nhealth_interval = 0\n\n'
            f'[[services]]\nname = "up"\nreplicas = {json.dumps(upstreams)}\n\n'
            f'[[services]]\nname = "taxi"\nreplicas = ["{taxi_url}"]\n',
            env=SIGNED,
        )
    except BaseException:
        stop_processes(taxi)  # the gateway never started: nothing else to stop
        raise

    def call(key: str | None, path: str = "/up/echo") -> httpx.Response:
        headers = {} if key is None else {"authorization": f"Bearer {key}"}
        return httpx.post(gateway + path, content=b"x", headers=headers, timeout=10)

    try:
        missing = call(None)
        assert missing.status_code == 401 and missing.headers["www-authenticate"]
        assert call(acme[:-4] + "abcd").status_code == 401  # wrong secret
        assert call("not-a-key").status_code == 401
        unscoped = call(globex)
        assert unscoped.status_code == 403 and "up" in unscoped.json()["detail"]
        assert call(acme).status_code == 200
        episode = {"session": "s1", "seed": 0, "max_steps": 5}
        headers = {"authorization": f"Bearer {acme}"}
        ran = httpx.post(f"{gateway}/taxi/v1/agent/episode", json=episode, headers=headers)
        assert ran.status_code == 200
        mine = httpx.get(f"{gateway}/taxi/v1/sessions/s1/qtable", headers=headers)
        assert mine.status_code == 200 and sum(map(sum, mine.json()["visits"])) == 5
        # Revoked from the command line while the gateway runs.
        key_id = acme.split("_")[1]
        revoke = subprocess.run(
            [sys.executable, "-m", "llmagentos", "keys", "revoke", key_id,
             "--file", str(tmp_path / "keys.db")],
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert revoke.returncode == 0, revoke.stderr
        revoked = call(acme)
        assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    finally:
        stop_processes(process, taxi)
