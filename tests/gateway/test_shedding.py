"""Load shedding: past its limits the gateway answers 503 with Retry-After at once.

The gates on their own (first come first served, a bounded queue with a deadline, a
cancelled waiter passing its slot on), then a real gateway process in front of a slow
upstream, flooded over real connections.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from llmagentos._processes import start_server, stop_processes
from llmagentos.exceptions import ConfigError
from llmagentos.gateway.config import load_gateway_config
from llmagentos.load_shedding import Gate, SheddingLimits

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")


async def test_a_gate_admits_its_limit_then_queues_then_sheds() -> None:
    gate = Gate(limit=2, max_queue=1, timeout=1.0)
    assert await gate.enter() and await gate.enter()
    queued = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)
    assert not await gate.enter()  # the queue is full: refused at once
    gate.leave()  # the slot goes to the queued request, not to a newcomer
    assert await queued and gate.in_flight == 2 and gate.shed == 1
    gate.leave()
    gate.leave()
    assert gate.in_flight == 0


async def test_a_queued_request_is_shed_at_its_deadline() -> None:
    gate = Gate(limit=1, max_queue=4, timeout=0.05)
    assert await gate.enter()
    started = time.monotonic()
    assert not await gate.enter()
    assert time.monotonic() - started >= 0.05 and not gate.waiters and gate.shed == 1


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    gate = Gate(limit=1, max_queue=4, timeout=5.0)
    assert await gate.enter()
    first = asyncio.ensure_future(gate.enter())
    second = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    gate.leave()
    assert await second and gate.in_flight == 1 and not gate.waiters


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_in_flight", -1),
        ("max_queue", 1.5),
        ("queue_timeout", "soon"),
        ("retry_after", True),
        ("late_admissions", -5),
        ("late_admissions", 2.5),
        ("reads_per_turn", "x"),
        ("sheds_per_turn", 0),  # a request left unread would wait forever
        ("overload_wait", -1),
    ],
)
def test_bad_limits_name_their_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        SheddingLimits(**{field: value})  # type: ignore[arg-type]


def test_the_config_file_names_a_bad_limit(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text("[gateway]\nmax_queue = -3\n")
    with pytest.raises(ConfigError, match=r"gateway\.max_queue"):
        load_gateway_config(config)
    config.write_text('[[services]]\nname = "a"\nmax_in_flight = 0\n')
    with pytest.raises(ConfigError, match=r"services\[0\]\.max_in_flight"):
        load_gateway_config(config)


@pytest.fixture(scope="module")
def flooded(echo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("shedding") / "gw.toml"
    config.write_text(
        "[gateway]\nmax_in_flight = 6\nmax_queue = 2\nqueue_timeout = 0.2\nretry_after = 2\n\n"
        f'[[services]]\nname = "slow"\nreplicas = ["{echo}"]\nmax_in_flight = 3\n\n'
        f'[[services]]\nname = "other"\nreplicas = ["{echo}"]\n'
    )
    process, url = start_server(["llmagentos", "gateway", str(config)])
    yield url
    stop_processes(process)


async def _flood(url: str, count: int) -> list[tuple[httpx.Response, float]]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one() -> tuple[httpx.Response, float]:
            started = time.monotonic()
            reply = await client.get(url)
            return reply, time.monotonic() - started

        return await asyncio.gather(*(one() for _ in range(count)))


def test_a_service_past_its_limit_is_shed_at_once(flooded: str) -> None:
    replies = asyncio.run(_flood(f"{flooded}/slow/slow?s=1.5", 20))
    statuses = sorted(reply.status_code for reply, _ in replies)
    assert statuses.count(200) == 3  # the service's own limit
    assert statuses.count(503) == 17 and set(statuses) == {200, 503}
    for reply, seconds in replies:
        if reply.status_code == 503:
            assert reply.headers["retry-after"] == "2"
            assert "overloaded" in reply.json()["detail"]
            assert seconds < 1.0  # answered at once (or at the queue's deadline)
        else:
            assert reply.text == "slow done"


def test_the_overall_limit_holds_across_services_and_probes_pass(flooded: str) -> None:
    async def both() -> tuple[list[tuple[httpx.Response, float]], ...]:
        slow = _flood(f"{flooded}/slow/slow?s=1.5", 3)
        other = _flood(f"{flooded}/other/slow?s=1.5", 12)
        await asyncio.sleep(0)
        probes = _probe(f"{flooded}/healthz")
        return await asyncio.gather(slow, other, probes)

    slow, other, probes = asyncio.run(both())
    served = [r for r, _ in slow + other if r.status_code == 200]
    shed = [r for r, _ in slow + other if r.status_code == 503]
    assert len(served) == 6 and len(shed) == 9  # 6 in flight overall, whatever the service
    assert all(r.status_code == 200 for r, _ in probes)  # a busy gateway is alive


async def _probe(url: str) -> list[tuple[httpx.Response, float]]:
    await asyncio.sleep(0.3)  # while the flood is in flight
    async with httpx.AsyncClient(timeout=5) as client:
        return [(await client.get(url), 0.0) for _ in range(3)]


def test_after_the_flood_everything_is_served_again(flooded: str) -> None:
    replies = asyncio.run(_flood(f"{flooded}/slow/echo", 3))
    assert [r.status_code for r, _ in replies] == [200, 200, 200]


def _metric(url: str, name: str, service: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf'^{name}{{service="{re.escape(service)}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_what_was_shed(flooded: str) -> None:
    before = _metric(flooded, "llmagentos_gateway_shed_total", "slow")
    replies = asyncio.run(_flood(f"{flooded}/slow/slow?s=0.5", 5))
    assert sorted(r.status_code for r, _ in replies) == [200, 200, 200, 503, 503]
    assert _metric(flooded, "llmagentos_gateway_shed_total", "slow") == before + 2
    assert _metric(flooded, "llmagentos_gateway_in_flight", "(gateway)") == 0


class _LateLoop:
    """A shedder around an app whose ``/slow`` blocks the loop ``blocks`` times for
    ``block`` seconds (yielding between: the loop stays late) and then stays in
    flight ``hold`` seconds; ``/x`` answers at once. ``statuses`` of every call."""

    def __init__(self, limits: SheddingLimits, *, blocks: int, block: float, hold: float):
        from llmagentos.load_shedding import LoadShedder, Shedding

        self.shedding = Shedding(limits)
        self.statuses: list[int] = []

        async def app(scope: dict[str, object], receive: object, send: object) -> None:
            if scope["path"] == "/slow":
                for _ in range(blocks):
                    time.sleep(block)  # CPU-bound work: the loop runs late for everyone
                    await asyncio.sleep(0.001)
                await asyncio.sleep(hold)
            await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
            await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

        self.shedder = LoadShedder(app, shedding=self.shedding)

    async def call(self, path: str = "/x") -> None:
        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                self.statuses.append(int(message["status"]))  # type: ignore[call-overload]

        await self.shedder({"type": "http", "path": path, "method": "GET"}, receive, send)


LATE = SheddingLimits(max_in_flight=100, max_loop_lag=0.05, late_admissions=1)


async def test_a_loop_that_stays_late_sheds_new_requests_but_keeps_serving_some() -> None:
    late = _LateLoop(LATE, blocks=3, block=0.09, hold=0.3)
    await late.call()  # starts the lag watch; the loop was on time so far
    await asyncio.sleep(0.03)
    held = asyncio.ensure_future(late.call("/slow"))  # in flight, keeping the loop late
    await asyncio.sleep(0.2)  # the watch has woken late twice in a row meanwhile
    await asyncio.gather(late.call(), late.call())  # within one tick: one admitted, one shed
    await held
    assert sorted(late.statuses) == [200, 200, 200, 503]
    assert late.shedding.shed_on_lag == 1 and late.shedding.stats()["shed"] == 1


async def test_one_pause_of_the_loop_sheds_nothing() -> None:
    late = _LateLoop(LATE, blocks=1, block=0.12, hold=0.3)  # a garbage collection, say
    await late.call()
    await asyncio.sleep(0.03)
    held = asyncio.ensure_future(late.call("/slow"))
    await asyncio.sleep(0.05)  # the watch woke 100 ms late once, then on time
    await asyncio.gather(*(late.call() for _ in range(5)))
    await held
    assert late.statuses == [200] * 7 and late.shedding.shed_on_lag == 0


async def test_a_lone_request_is_never_shed_however_late_the_loop() -> None:
    # One client calling in turn (an agent's remote planner) cannot overload a server;
    # a loop late because the machine is busy must not refuse it. Its calls come on
    # turns of their own (a reply reaches the client before it sends the next).
    # No late admissions at all: being alone is what spares them.
    late = _LateLoop(replace(LATE, late_admissions=0), blocks=3, block=0.09, hold=0.0)
    await late.call()
    for _ in range(4):
        await asyncio.sleep(0)
        await late.call("/slow")  # each leaves the loop late for the next
        await asyncio.sleep(0)
        await late.call()
        await asyncio.sleep(0)
        await late.call()
    assert late.statuses == [200] * 13 and late.shedding.loop_lag.lasting > 0.05
    assert late.shedding.shed_on_lag == 0


async def test_quick_requests_that_come_together_are_shed_while_the_loop_is_late() -> None:
    # A CPU-bound server: each request finishes within its turn, so none is ever in
    # flight when the next one starts; the flood shows as requests starting together.
    late = _LateLoop(LATE, blocks=0, block=0.0, hold=0.0)
    await late.call()  # starts the lag watch

    async def hog() -> None:  # the server's own work, keeping its loop late
        for _ in range(4):
            time.sleep(0.09)
            await asyncio.sleep(0.001)

    busy = asyncio.ensure_future(hog())
    await asyncio.sleep(0.2)  # the watch has woken late twice in a row meanwhile
    assert late.shedding.loop_lag.lasting > 0.05 and late.shedding.overall.in_flight == 0
    await asyncio.gather(late.call(), late.call(), late.call())  # one turn
    await busy
    # The first of the turn, then late_admissions (1) more; the third is shed.
    assert late.statuses == [200, 200, 200, 503] and late.shedding.shed_on_lag == 1
