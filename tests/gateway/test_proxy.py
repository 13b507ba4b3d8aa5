"""The gateway in front of real module-service processes: routing, registry, failover,
limits, request ids and trace context, with real processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmagentos._processes import free_port, start_server

pytest.importorskip("starlette", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _port() -> int:
    return free_port()


def _start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    return start_server(["llmagentos", *args])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    replicas = [_start("serve", str(TAXI)) for _ in range(2)]
    config = tmp_path_factory.mktemp("gw") / "gateway.toml"
    config.write_text(
        '[gateway]\nmax_body_bytes = 20000\n\n[[services]]\nname = "taxi"\n'
        f"replicas = {json.dumps([url for _, url in replicas])}\ntimeout = 10\n"
    )
    gateway, url = _start("gateway", str(config))
    yield {"gateway": url, "replicas": replicas, "process": gateway}
    for process, _ in [*replicas, (gateway, url)]:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)


def _perceive(gateway: str, session: str, observation: int, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway}/taxi/v1/perception/perceive",
        json={"session": session, "observation": observation}, headers=headers, timeout=15,
    )  # fmt: skip


def test_routes_to_the_service_and_carries_ids(stack: dict[str, object]) -> None:
    gateway = str(stack["gateway"])
    reply = _perceive(gateway, "s1", 42)
    assert reply.status_code == 200 and reply.json() == {"features": 42}
    assert len(reply.headers["x-request-id"]) >= 16
    mine = _perceive(gateway, "s1", 7, **{"x-request-id": "req-123"})
    assert mine.headers["x-request-id"] == "req-123"
    health = httpx.get(f"{gateway}/taxi/healthz")
    assert health.json() == {"status": "ok"}  # the replica's own route, through the gateway


def test_unknown_service_and_route_name_the_problem(stack: dict[str, object]) -> None:
    gateway = str(stack["gateway"])
    unknown = httpx.get(f"{gateway}/nope/v1/x")
    assert unknown.status_code == 404 and "unknown service 'nope'" in unknown.json()["detail"]
    assert "taxi" in unknown.json()["detail"]
    missing = httpx.post(f"{gateway}/taxi/v1/nowhere", json={})
    assert missing.status_code == 404  # the replica's 404, passed through, naming the route
    assert "no route /v1/nowhere" in missing.json()["detail"]
    wrong_method = httpx.get(f"{gateway}/taxi/v1/perception/perceive")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert "GET is not allowed on /v1/perception/perceive" in wrong_method.json()["detail"]


def test_client_mistakes_stay_4xx_through_the_gateway(stack: dict[str, object]) -> None:
    gateway = str(stack["gateway"])
    big = httpx.post(f"{gateway}/taxi/v1/perception/perceive", content=b"x" * 30_000)
    assert big.status_code == 413 and "20000" in big.json()["detail"]
    wrong = httpx.post(
        f"{gateway}/taxi/v1/learning/learn",
        json={"session": "s", "observation": 1, "reward": "lots"},
    )
    assert wrong.status_code == 422 and "reward" in wrong.text
    broken = httpx.post(
        f"{gateway}/taxi/v1/learning/learn", content=b'{"session": "s", "obs',
        headers={"content-type": "application/json"},
    )  # fmt: skip
    # A JSON-typed body that is not JSON: the gateway's own 400, never forwarded.
    assert broken.status_code == 400 and broken.json()["field"] == "body"
    assert "not JSON" in broken.json()["detail"]


def test_services_are_added_and_removed_at_run_time(stack: dict[str, object]) -> None:
    gateway = str(stack["gateway"])
    _, first_url = stack["replicas"][0]  # type: ignore[index]
    added = httpx.post(f"{gateway}/gateway/services/extra/replicas", json={"url": first_url})
    assert added.status_code == 201 and added.json()["replicas"] == [first_url]
    via = httpx.post(
        f"{gateway}/extra/v1/perception/perceive", json={"session": "e", "observation": 3}
    )
    assert via.json() == {"features": 3}
    listed = httpx.get(f"{gateway}/gateway/services").json()["services"]
    assert {s["name"] for s in listed} == {"taxi", "extra"}
    assert (
        httpx.request(
            "DELETE", f"{gateway}/gateway/services/extra/replicas", json={"url": first_url}
        ).status_code
        == 200
    )
    assert httpx.get(f"{gateway}/extra/healthz").status_code == 404
    bad = httpx.post(f"{gateway}/gateway/services/extra/replicas", json={"url": "ftp://x"})
    assert bad.status_code == 422 and "http(s) URL" in bad.json()["detail"]
    assert (
        httpx.request(
            "DELETE", f"{gateway}/gateway/services/extra/replicas", json={"url": first_url}
        ).status_code
        == 404
    )


def test_metrics_are_per_route_template_and_upstream(stack: dict[str, object]) -> None:
    gateway = str(stack["gateway"])
    deadline = time.monotonic() + 10  # the gateway reads the service's /openapi.json
    while time.monotonic() < deadline:
        listed = httpx.get(f"{gateway}/gateway/services").json()["services"]
        templates = next(s["route_templates"] for s in listed if s["name"] == "taxi")
        if templates:
            break
        time.sleep(0.05)
    assert "/v1/sessions/{session}" in templates
    assert _perceive(gateway, "metric-call", 1).status_code == 200  # (not left to other tests)
    for index in range(5):  # sessions in paths: one template, not one series each
        httpx.delete(f"{gateway}/taxi/v1/sessions/metric-{index}")
    for name in ("nope-1", "nope-2", "nope-3"):
        httpx.get(f"{gateway}/{name}/v1/x")
    metrics = httpx.get(f"{gateway}/metrics").text
    assert 'route="/v1/sessions/{session}",service="taxi",status="404"' in metrics
    assert 'route="/v1/perception/perceive",service="taxi",status="200",upstream="http' in metrics
    assert "metric-" not in metrics  # no raw session ids
    assert 'service="(unknown)",status="404",upstream="-"' in metrics  # nor unknown names
    assert "nope-" not in metrics
    replica_url = stack["replicas"][0][1]  # type: ignore[index]
    assert (
        f'llmagentos_gateway_upstream_seconds_count{{service="taxi",upstream="{replica_url}"}}'
        in (metrics)
    )


def test_a_killed_replica_is_routed_around_and_none_left_is_503(stack: dict[str, object]) -> None:
    gateway = str(stack["gateway"])
    replicas = stack["replicas"]
    process, _ = replicas[1]  # type: ignore[index]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=15)
    started = time.monotonic()
    replies = [_perceive(gateway, f"k{i}", i) for i in range(20)]
    assert [r.status_code for r in replies] == [200] * 20  # every call failed over
    assert [r.json()["features"] for r in replies] == list(range(20))
    assert time.monotonic() - started < 15
    survivor, _ = replicas[0]  # type: ignore[index]
    survivor.send_signal(signal.SIGKILL)
    survivor.wait(timeout=15)
    down = _perceive(gateway, "z", 1)
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    assert "no replica of 'taxi'" in down.json()["detail"]
    metrics = httpx.get(f"{gateway}/metrics").text
    assert 'service="taxi",status="503",upstream="-"' in metrics


def test_a_bad_gateway_config_fails_before_listening(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[services]]\nname = "Bad Name"\nreplicas = []\n')
    done = subprocess.run(
        [sys.executable, "-m", "llmagentos", "gateway", str(config), "--port", str(_port())],
        check=False, capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip
    assert done.returncode == 2 and "services[0].name" in done.stderr
