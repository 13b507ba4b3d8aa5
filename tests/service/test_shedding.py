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


class HoggingPlanner(PlanningModule):
    """Decides in 10 ms of CPU on the event loop: each request ends within its turn."""

    async def adecide(self, features: Any) -> Decision:
        time.sleep(0.01)
        return Decision(0, "hog")


def hogging_planner(env: Any = None) -> HoggingPlanner:
    return HoggingPlanner()


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
    # Past the two slots the others were left unread, then refused at their deadline.
    details = [reply.json()["detail"] for reply, _ in replies if reply.status_code == 503]
    assert sum("more requests than it could read within 100 ms" in d for d in details) >= 9, details
    assert ready == 200  # probes are never shed
    again = asyncio.run(_decide_all(service, 2))
    assert [r.status_code for r, _ in again] == [200, 200]


def test_remote_modules_wait_out_a_shed_and_are_served(service: str) -> None:
    from llmagentos.exceptions import ModuleError
    from llmagentos.service.remote import remote_modules

    async def five(retries: int) -> list[object]:
        planners = [remote_modules(service, "planning", retries=retries)[0] for _ in range(5)]
        try:
            calls = (planner.adecide(0) for planner in planners)
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            for planner in planners:
                await planner.client.aclose()

    # Two in flight, one queued then shed at 0.1 s, two shed at once: each waits out
    # the Retry-After of 1 s and is sent again, until all five are served.
    started = time.monotonic()
    served = asyncio.run(five(retries=4))
    assert [getattr(d, "reason", d) for d in served] == ["slow"] * 5
    assert time.monotonic() - started >= 2.0  # some were refused first

    refused = asyncio.run(five(retries=0))
    errors = [str(r) for r in refused if isinstance(r, ModuleError)]
    assert len(errors) == 3 and all("503 overloaded" in e for e in errors)


@pytest.mark.parametrize(
    ("refusal", "tries"),
    [
        ({"retry-after": "0"}, 3),  # waited out, sent again with the same key
        ({}, 1),  # no promise of when: the caller sees the 503
        ({"retry-after": "60"}, 1),  # a long outage: not waited out in a call
        ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, 1),
    ],
)
def test_a_sync_client_retries_only_a_short_promised_wait(
    refusal: dict[str, str], tries: int
) -> None:
    from llmagentos.exceptions import ModuleError
    from llmagentos.service.remote import ServiceClient

    keys: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        if len(keys) <= 2:
            return httpx.Response(503, headers=refusal, json={"detail": "overloaded"})
        return httpx.Response(200, json={"ok": True})

    client = ServiceClient("http://svc", transport=httpx.MockTransport(answer))
    if tries == 3:
        assert client.post("planning", "/v1/planning/decide", features=0) == {"ok": True}
    else:
        with pytest.raises(ModuleError, match="503 overloaded"):
            client.post("planning", "/v1/planning/decide", features=0)
    assert len(keys) == tries and len(set(keys)) == 1


def test_a_cpu_bound_service_sheds_a_flood_on_lag_but_never_a_lone_client(
    tmp_path: Path,
) -> None:
    # No request is in flight when the next starts (each holds the loop to its end),
    # so only the loop's lag shows the flood: 24 clients at once, in a closed loop.
    config = tmp_path / "hog.toml"
    config.write_text(
        '[env]\nid = "Taxi-v4"\n\n[agent.planning]\n'
        'type = "tests.service.test_shedding:hogging_planner"\n'
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    process, url = start_server(["llmagentos", "serve", str(config)], env=env)
    body = {"session": "s", "features": 0}
    try:
        with httpx.Client(timeout=30) as lone:  # alone, calling in turn: never shed
            alone = [lone.post(f"{url}/v1/planning/decide", json=body) for _ in range(20)]
        assert [r.status_code for r in alone] == [200] * 20

        async def flood() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=24)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                until = time.monotonic() + 2.0

                async def closed_loop(index: int) -> list[httpx.Response]:
                    replies = []
                    while time.monotonic() < until:
                        sent = {"session": f"f{index}", "features": 0}
                        replies.append(await client.post(f"{url}/v1/planning/decide", json=sent))
                    return replies

                loops = await asyncio.gather(*(closed_loop(i) for i in range(24)))
                return [reply for replies in loops for reply in replies]

        replies = asyncio.run(flood())
    finally:
        stop_processes(process)
    statuses = {reply.status_code for reply in replies}
    shed = [reply for reply in replies if reply.status_code == 503]
    assert statuses <= {200, 503} and shed and len(shed) < len(replies), statuses
    assert all(r.headers["retry-after"] == "1" for r in shed)
    # On lag, or (the loop held by a hog is slow to read) left unread past the deadline.
    reasons = [r.json()["detail"] for r in shed]
    assert any("event loop" in reason for reason in reasons), reasons
    assert all("event loop" in r or "could read within" in r for r in reasons), reasons
