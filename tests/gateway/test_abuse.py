"""The gateway under abuse (issue 10, section 7), with real processes where it matters.

- a flood of one bad key costs one scrypt: the failure is remembered;
- a flood of distinct bad keys from one address, or of bad secrets for one key id, is
  rate-limited (429 with Retry-After) before the scrypt work, while a key verified
  before keeps working;
- a Redis rate-limit store killed under the gateway answers as configured (503 with
  Retry-After, or lets requests through), never a 500, and recovers when Redis is back;
- the access log's buffer is bounded and counts what it drops (a pipe nobody reads);
- credential checks run on the runtime's own pool: a default executor full of hung
  work does not stall authentication.

(JWKS refreshes under a flood of made-up key ids: test_jwt.py.)
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import secrets
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from llmagentos._processes import start_server, stop_processes
from llmagentos.gateway import ApiKeyStore, Gateway, ServiceRegistry
from llmagentos.gateway.access_log import BatchingHandler, dropped_lines
from llmagentos.gateway.testing import app as echo_app
from tests.gateway.rawhttp import send
from tests.redis_server import running_redis

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

ROOT = Path(__file__).resolve().parents[2]
SECRET = "abuse-test-principal-secret-0123456789"
ENV = {**os.environ, "LLMAGENTOS_PRINCIPAL_SECRET": SECRET, "PYTHONPATH": str(ROOT / "src")}


def _metric(gateway: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{gateway}/metrics").text
    match = re.search(rf"^{re.escape(name + labels)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _checks(gateway: str, outcome: str) -> float:
    return _metric(
        gateway, "llmagentos_gateway_credential_checks_total", f'{{outcome="{outcome}"}}'
    )


def _random_key(key_id: str | None = None) -> str:
    return f"lak_{key_id or secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def test_bad_keys_cost_little_and_a_known_key_keeps_working(echo: str, tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path / "keys.db")  # the real scrypt cost: ~40 ms per check
    good = keys.create_key("acme", ["echo:*"])
    keys.close()
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\nkeys = "keys.db"\nhealth_interval = 0\n'
        "auth_address_rate = 0.2\nauth_address_burst = 6\n"
        "auth_key_rate = 0.2\nauth_key_burst = 3\n\n"
        f'[[services]]\nname = "echo"\nreplicas = ["{echo}"]\n'
    )
    process, url = start_server(["llmagentos", "gateway", str(config)], env=ENV)

    def call(key: str) -> int:
        return send(
            url, "GET", "/echo/inspect", headers=[("Authorization", f"Bearer {key}")]
        ).status

    try:
        assert call(good) == 200  # verified once (one costly check), then remembered
        # One bad key, thirty times: one scrypt, the rest answered from memory.
        bad = _random_key()
        assert [call(bad) for _ in range(30)] == [401] * 30
        assert _checks(url, "costly") == 2 and _checks(url, "remembered") == 29
        # Bad secrets for one key id: that id's bucket of costly checks (3, one spent on
        # the real key) runs dry.
        key_id = good.split("_")[1]
        statuses = [call(_random_key(key_id)) for _ in range(6)]
        assert statuses[:2] == [401] * 2 and set(statuses[2:]) == {429}
        # Distinct made-up keys from one address: its bucket runs dry too.
        flood = [send(url, "GET", "/echo/inspect",
                      headers=[("Authorization", f"Bearer {_random_key()}")])
                 for _ in range(10)]  # fmt: skip
        throttled = [r for r in flood if r.status == 429]
        assert throttled and all(int(r.headers["retry-after"]) >= 1 for r in throttled)
        assert "address" in throttled[0].json()["detail"]
        assert _checks(url, "costly") <= 2 + 3 + 6 + 1  # bounded by the bursts, not the flood
        # Meanwhile the key verified before passes at once: it costs a hash, no token.
        assert call(good) == 200
    finally:
        stop_processes(process)


def test_a_killed_redis_answers_as_configured_never_500(echo: str, tmp_path: Path) -> None:
    with running_redis() as (redis, redis_url):
        port = redis_url.rsplit(":", 1)[1].split("/")[0]
        gateways = {}
        try:
            for mode in ("closed", "open"):
                config = tmp_path / f"{mode}.toml"
                config.write_text(
                    f"[gateway]\nhealth_interval = 0\nrate_per_second = 100\nburst = 100\n"
                    f'redis_url = "{redis_url}"\nrate_limit_failure = "{mode}"\n\n'
                    f'[[services]]\nname = "echo"\nreplicas = ["{echo}"]\n'
                )
                gateways[mode] = start_server(["llmagentos", "gateway", str(config)], env=ENV)
            closed, opened = gateways["closed"][1], gateways["open"][1]
            assert httpx.get(f"{closed}/echo/inspect").status_code == 200
            assert httpx.get(f"{opened}/echo/inspect").status_code == 200
            redis.kill()
            redis.wait(timeout=10)
            down = [httpx.get(f"{closed}/echo/inspect") for _ in range(5)]
            assert [r.status_code for r in down] == [503] * 5
            assert all(int(r.headers["retry-after"]) >= 1 for r in down)
            assert "rate-limit store" in down[0].json()["detail"]
            assert [httpx.get(f"{opened}/echo/inspect").status_code for _ in range(5)] == [200] * 5
            assert _metric(closed, "llmagentos_gateway_rate_limit_store_errors_total") >= 1
            assert _metric(opened, "llmagentos_gateway_rate_limit_store_errors_total") >= 1
            # Redis back on the same port: the closed gateway recovers by itself.
            from tests.redis_server import REDIS_SERVER

            assert REDIS_SERVER is not None
            again = subprocess.Popen(
                [REDIS_SERVER, "--port", port, "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 20
                status = 503
                while status != 200 and time.monotonic() < deadline:
                    time.sleep(0.3)
                    status = httpx.get(f"{closed}/echo/inspect").status_code
                assert status == 200
            finally:
                again.terminate()
                again.wait(timeout=10)
        finally:
            stop_processes(*(process for process, _ in gateways.values()))


class _Stuck(io.StringIO):
    """A stream whose writes block until released: a pipe nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(10)
        return super().write(text)


def test_the_access_log_buffer_is_bounded_and_counts_drops() -> None:
    stream = _Stuck()
    handler = BatchingHandler(stream, owns_stream=False, max_pending=50, interval=0.01)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.access.bounded")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    before = dropped_lines()
    try:
        for index in range(5000):
            logger.info("line %d", index)
        assert len(handler._pending) <= 50
        assert handler.dropped >= 5000 - 50 - 50  # at most one batch is in the writer's hands
        assert dropped_lines() - before == handler.dropped
    finally:
        stream.release.set()
        logger.removeHandler(handler)
        handler.close()


def test_a_gateway_whose_log_nobody_reads_keeps_answering(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[gateway]\nhealth_interval = 0\n")
    # stderr is a pipe this test never reads: once its buffer fills, the writer blocks.
    process, url = start_server(
        ["llmagentos", "gateway", str(config), "--access-log", "-", "--access-log-buffer", "20"],
        env=ENV, output=subprocess.PIPE,
    )  # fmt: skip
    try:
        long = "/nope/" + "x" * 120
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(800):  # ~200 bytes a line: well past a 64 KiB pipe
                assert client.get(long).status_code == 404
            assert _metric(url, "llmagentos_gateway_access_log_dropped_total") > 0
            assert client.get("/healthz").status_code == 200
    finally:
        process.kill()  # its log is stuck on purpose: no graceful flush to wait for
        process.wait(timeout=15)


async def test_credential_checks_do_not_wait_on_a_full_default_executor(tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path / "keys.db", scrypt_n=2**10)
    key = keys.create_key("acme", ["echo:*"])
    registry = ServiceRegistry([{"name": "echo", "replicas": ["http://echo.test"]}])
    gateway = Gateway(
        registry, keys=keys, transport=httpx.ASGITransport(app=echo_app), principal_secret=SECRET
    )
    loop = asyncio.get_running_loop()
    hung = threading.Event()
    executor = ThreadPoolExecutor(2)
    loop.set_default_executor(executor)
    stuck = [loop.run_in_executor(None, hung.wait) for _ in range(2)]  # sync tools that hang
    try:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway.app()), base_url="http://gw"
        )
        async with client:
            reply = await asyncio.wait_for(
                client.get("/echo/inspect", headers={"authorization": f"Bearer {key}"}), 20
            )
        assert reply.status_code == 200
    finally:
        hung.set()
        await asyncio.gather(*stuck)
        await gateway.upstream.aclose()
