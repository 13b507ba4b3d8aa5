"""Two gateway processes share one rate limit through Redis (real processes, real Redis)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from llmagentos._processes import start_server

pytest.importorskip("redis", reason="the 'redis' package is not installed (extra: gateway)")
pytest.importorskip("starlette", reason="needs llmagentos[serve]")


def _start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    flag = "--port" if args[-1] == "--port" else None
    return start_server(list(args[:-1] if flag else args), port_flag=flag)


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
