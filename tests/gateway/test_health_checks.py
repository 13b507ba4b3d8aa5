"""The gateway's active health checks, with real processes: a dead replica is found by
its checks and taken out of rotation, and /metrics shows it."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from llmagentos._processes import start_server

pytest.importorskip("starlette", reason="needs llmagentos[serve]")


def _start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    flag = "--port" if args[-1] == "--port" else None
    return start_server(list(args[:-1] if flag else args), port_flag=flag)


def _healthy(metrics: str, replica: str) -> float | None:
    match = re.search(
        r'llmagentos_gateway_replica_healthy\{replica="'
        + re.escape(replica)
        + r'",service="up"\} (\S+)',
        metrics,
    )
    return None if match is None else float(match.group(1))


def test_a_dead_replica_is_found_by_its_checks(tmp_path: Path) -> None:
    replicas = [_start("llmagentos.gateway.testing") for _ in range(2)]
    config = tmp_path / "gateway.toml"
    urls = ", ".join(f'"{url}"' for _, url in replicas)
    config.write_text(
        f'[gateway]\nhealth_interval = 0.2\n\n[[services]]\nname = "up"\nreplicas = [{urls}]\n'
    )
    gateway, gateway_url = _start("llmagentos", "gateway", str(config), "--port")
    try:
        assert httpx.get(f"{gateway_url}/up/echo").status_code == 200
        victim, dead = replicas[0]
        _, alive = replicas[1]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{gateway_url}/metrics").text
            if _healthy(metrics, dead) == 0.0:
                break
            time.sleep(0.1)
        assert _healthy(metrics, dead) == 0.0 and _healthy(metrics, alive) == 1.0
        replies = [httpx.get(f"{gateway_url}/up/echo") for _ in range(10)]
        assert [r.status_code for r in replies] == [200] * 10
        assert 'llmagentos_gateway_breaker_open{service="up"} 0.0' in metrics
        listed = httpx.get(f"{gateway_url}/gateway/services").json()["services"]
        state = listed[0]["state"]
        assert state["breaker"] == "closed"
        by_url = {r["url"]: r for r in state["replicas"]}
        assert by_url[dead]["healthy"] is False and by_url[dead]["available"] is False
        assert by_url[alive]["healthy"] is True and by_url[alive]["in_flight"] == 0
    finally:
        for process, _ in [*replicas, (gateway, gateway_url)]:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
