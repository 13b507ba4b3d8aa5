"""A module service sheds what is past its limits: 503 with Retry-After at once, raw
HTTP to a real ``llmagentos serve`` whose planner takes a second per decision."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos._processes import start_server, stop_processes
from llmagentos.modules import PlanningModule
from llmagentos.types import Decision

ROOT = Path(__file__).resolve().parents[2]


class SlowPlanner(PlanningModule):
    """Takes a second to decide, without holding the event loop."""

    async def adecide(self, features: Any) -> Decision:
        await asyncio.sleep(1.0)
        return Decision(0, "slow")


def slow_planner(env: Any = None) -> SlowPlanner:
    return SlowPlanner()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("fastapi", reason="needs llmagentos[serve]")
    config = tmp_path_factory.mktemp("slow") / "slow.toml"
    config.write_text(
        '[env]\nid = "Taxi-v4"\n\n[agent.planning]\n'
        'type = "tests.service.test_shedding:slow_planner"\n'
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    process, url = start_server(
        ["llmagentos", "serve", str(config), "--max-in-flight", "2", "--max-queue", "1",
         "--queue-timeout", "0.1", "--port"],
        port_flag=None, env=env,
    )  # fmt: skip
    yield url
    stop_processes(process)


async def _decide_all(url: str, count: int) -> list[tuple[httpx.Response, float]]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(index: int) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            body = {"session": f"s{index}", "features": 0}
            reply = await client.post(f"{url}/v1/planning/decide", json=body)
            return reply, time.monotonic() - started

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_a_busy_service_sheds_at_once_and_stays_alive(service: str) -> None:
    async def flood_and_probe() -> tuple[list[tuple[httpx.Response, float]], int]:
        flood = asyncio.ensure_future(_decide_all(service, 12))
        await asyncio.sleep(0.4)
        async with httpx.AsyncClient(timeout=5) as client:
            ready = (await client.get(f"{service}/readyz")).status_code
        return await flood, ready

    replies, ready = asyncio.run(flood_and_probe())
    statuses = sorted(reply.status_code for reply, _ in replies)
    assert statuses == [200, 200] + [503] * 10, statuses
    for reply, seconds in replies:
        if reply.status_code == 503:
            assert reply.headers["retry-after"] == "1" and seconds < 0.9
            assert "overloaded: the service" in reply.json()["detail"]
    assert ready == 200  # probes are never shed
    again = asyncio.run(_decide_all(service, 2))
    assert [r.status_code for r, _ in again] == [200, 200]
