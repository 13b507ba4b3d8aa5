"""Two gateway processes share one rate limit through Redis (real processes, real Redis)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("redis", reason="the 'redis' package is not installed (extra: gateway)")
pytest.importorskip("starlette", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", *args, str(port)], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{args} never became ready")


def test_two_gateways_share_one_limit_through_redis(redis_url: str, tmp_path: Path) -> None:
    upstream, upstream_url = _start("llmagentos.gateway.testing")
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nrate_per_second = 0.01\nburst = 6\nredis_url = "{redis_url}"\n\n'
        f'[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n'
    )
    gateways = [_start("llmagentos", "gateway", str(config), "--port") for _ in range(2)]
    try:
        statuses = []
        for index in range(12):  # alternate between the two gateway replicas
            _, url = gateways[index % 2]
            statuses.append(httpx.get(f"{url}/up/echo").status_code)
        assert statuses.count(200) == 6  # one burst in all, not one per gateway
        assert statuses[6:] == [429] * 6
        limited = httpx.get(f"{gateways[1][1]}/up/echo")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    finally:
        for process, _ in [*gateways, (upstream, upstream_url)]:
            process.terminate()
            process.wait(timeout=15)
