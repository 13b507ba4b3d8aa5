"""Graceful shutdown, trace context and idempotency rules against a real upstream."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette", reason="needs llmagentos[serve]")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail(f"{url} never became ready")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    up_port, gw_port = _port(), _port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "llmagentos.gateway.testing", str(up_port)],
        env=ENV, stderr=subprocess.PIPE,
    )  # fmt: skip
    up_url = f"http://127.0.0.1:{up_port}"
    _wait(up_url, upstream)
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[[services]]\nname = "up"\nreplicas = ["{up_url}"]\ntimeout = 5\n'
        'route_timeouts = { "/nap" = 0.3 }\n'
    )
    gateway = subprocess.Popen(
        [sys.executable, "-m", "llmagentos", "gateway", str(config), "--port", str(gw_port)],
        env=ENV, stderr=subprocess.PIPE,
    )  # fmt: skip
    gw_url = f"http://127.0.0.1:{gw_port}"
    _wait(gw_url, gateway)
    yield gw_url, up_url, gateway
    for process in (gateway, upstream):
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)


def test_in_flight_requests_finish_and_new_ones_are_refused(pair) -> None:
    gateway, _, process = pair
    results: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: results.append(httpx.get(f"{gateway}/up/slow?s=1.5", timeout=20))
    )
    slow.start()
    time.sleep(0.5)  # the slow request is in flight
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gateway}/up/echo", timeout=5)
    slow.join(timeout=20)
    assert [r.status_code for r in results] == [200] and results[0].text == "slow done"
    # uvicorn re-raises SIGTERM once it has drained, so the exit reports the signal.
    assert process.wait(timeout=20) in (0, -signal.SIGTERM)


def test_trace_context_and_request_ids_reach_the_upstream(pair) -> None:
    gateway, _, _ = pair
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    reply = httpx.post(
        f"{gateway}/up/echo", content=b"hi",
        headers={"traceparent": trace, "x-request-id": "abc"},
    )  # fmt: skip
    seen = reply.json()["headers"]
    assert seen["x-request-id"] == "abc" and reply.headers["x-request-id"] == "abc"
    _, trace_id, span, _ = seen["traceparent"].split("-")
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"  # the same trace
    assert span != "b7ad6b7169203331" and len(span) == 16  # a new span for the hop
    fresh = httpx.get(f"{gateway}/up/echo").json()["headers"]
    assert len(fresh["traceparent"].split("-")[1]) == 32 and fresh["x-request-id"]
    assert reply.json()["body"] == "hi"


def test_upstream_errors_pass_through_unretried(pair) -> None:
    gateway, upstream, _ = pair
    before = httpx.get(f"{upstream}/calls").json()["calls"]
    statuses = [httpx.post(f"{gateway}/up/flaky").status_code for _ in range(10)]
    after = httpx.get(f"{upstream}/calls").json()["calls"]
    assert sorted(statuses) == [200] * 5 + [500] * 5  # the upstream's answers, as they were
    assert after - before == 10  # one upstream call per client call: a POST is not retried
    assert json.loads(httpx.get(f"{gateway}/gateway/services").text)["services"][0]["name"] == "up"


def test_routes_have_their_own_timeouts(pair) -> None:
    gateway, _, _ = pair
    started = time.monotonic()
    cut = httpx.get(f"{gateway}/up/nap?s=2", timeout=10)
    assert cut.status_code == 504 and "0.3 s" in cut.json()["detail"]
    assert time.monotonic() - started < 1.5
    assert httpx.get(f"{gateway}/up/slow?s=0.5", timeout=10).status_code == 200  # the 5 s
