"""The unread queue on its own, on a real event loop: how many requests it lets be read
per turn, which waiting one a freed slot goes to, and when one is refused instead."""

from __future__ import annotations

import asyncio

import pytest

from llmagentos.load_shedding import LoadShedder, Shedding, SheddingLimits, shed_first
from llmagentos.unread_queue import UnreadQueue, unread_queue_of


class Connection:
    """Stands in for the HTTP protocol: records when and how it was read."""

    def __init__(self, name: str, log: list[tuple[str, bool]]) -> None:
        self.name, self.log = name, log

    def unpark(self, *, expired: bool) -> None:
        self.log.append((self.name, expired))


class Slots:
    """``free`` slots in all, each taken by a request read (as logged)."""

    def __init__(self, free: int, log: list[tuple[str, bool]]) -> None:
        self.free, self.log = free, log

    def room(self, coming: int) -> bool:
        return len(self.log) < self.free  # the log counts those read as admitted


def _queue(slots: Slots, **settings: float) -> UnreadQueue:
    options: dict[str, float] = {
        "reads_per_turn": 2, "sheds_per_turn": 2, "queue_timeout": 0.05, "overload_wait": 0.01,
    }  # fmt: skip
    options.update(settings)
    queue = UnreadQueue(
        slots.room,
        reads_per_turn=int(options["reads_per_turn"]),
        sheds_per_turn=int(options["sheds_per_turn"]),
        queue_timeout=options["queue_timeout"],
        overload_wait=options["overload_wait"],
    )
    queue.bind(asyncio.get_running_loop())
    return queue


def _arrive(queue: UnreadQueue, name: str, log: list[tuple[str, bool]]) -> bool:
    """One request arrives: read at once (``True``) or left unread."""
    if queue.take():
        log.append((name, False))
        return True
    queue.park(Connection(name, log))
    return False


async def test_at_most_reads_per_turn_are_read_and_the_rest_next_turns_in_order() -> None:
    log: list[tuple[str, bool]] = []
    queue = _queue(Slots(100, log))
    read_now = [_arrive(queue, f"r{i}", log) for i in range(5)]
    assert read_now == [True, True, False, False, False]
    await asyncio.sleep(0)  # the next turn of the loop
    assert [name for name, _ in log] == ["r0", "r1", "r2", "r3"]
    await asyncio.sleep(0)
    assert log == [(f"r{i}", False) for i in range(5)] and not queue.waiting


async def test_without_a_slot_requests_wait_unread_and_a_freed_slot_reads_the_oldest() -> None:
    log: list[tuple[str, bool]] = []
    slots = Slots(0, log)
    queue = _queue(slots, queue_timeout=5.0)
    assert not any(_arrive(queue, name, log) for name in ("a", "b", "c"))
    for _ in range(3):
        await asyncio.sleep(0)
    assert log == [] and len(queue.waiting) == 3  # nobody read while the server is full
    slots.free = 1
    queue.slot_freed()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert log == [("a", False)]
    # A new request does not overtake those already waiting, even with a slot free.
    slots.free = 5
    assert not _arrive(queue, "d", log)
    await asyncio.sleep(0)
    assert [name for name, _ in log] == ["a", "b", "c"]


async def test_a_request_unread_past_queue_timeout_is_refused_a_few_per_turn() -> None:
    log: list[tuple[str, bool]] = []
    queue = _queue(Slots(0, log), queue_timeout=0.02, sheds_per_turn=2)
    loop, turns = asyncio.get_running_loop(), [0]

    def tick() -> None:  # runs once per turn of the loop
        turns[0] += 1
        loop.call_soon(tick)

    loop.call_soon(tick)
    refused_in_turn: list[int] = []

    class Counted(Connection):
        def unpark(self, *, expired: bool) -> None:
            super().unpark(expired=expired)
            refused_in_turn.append(turns[0])

    for i in range(7):
        queue.park(Counted(f"r{i}", log))
    await asyncio.sleep(0.01)
    assert log == []  # still within their deadline
    await asyncio.sleep(0.03)
    assert log == [(f"r{i}", True) for i in range(7)] and queue.expired == 7
    per_turn = [refused_in_turn.count(turn) for turn in set(refused_in_turn)]
    assert max(per_turn) == 2 and len(per_turn) == 4  # 2, 2, 2, 1: in four turns


async def test_a_lasting_overload_gives_a_freed_slot_only_to_a_recent_request() -> None:
    log: list[tuple[str, bool]] = []
    slots = Slots(0, log)
    queue = _queue(slots, queue_timeout=0.1, overload_wait=0.02, reads_per_turn=1)
    _arrive(queue, "old", log)
    await asyncio.sleep(0.06)
    for i in range(2):
        _arrive(queue, f"mid{i}", log)
    await asyncio.sleep(0.05)  # the queue never emptied within queue_timeout: overloaded
    for i in range(2):
        _arrive(queue, f"new{i}", log)
    slots.free = 4  # "old"'s refusal is logged too
    queue.slot_freed()
    for _ in range(4):
        await asyncio.sleep(0)
    # "old" is past its deadline: refused. The recent ones get the slots; "mid*", still
    # within their deadline but not recent, get one only when no recent one waits.
    assert log[0] == ("old", True)
    assert sorted(name for name, _ in log[1:3]) == ["new0", "new1"]
    assert log[3][0] in ("mid0", "mid1") and len(log) == 4


async def test_recent_requests_are_chosen_at_random_not_newest_first() -> None:
    # Newest first starves a client slower to send again than the flood: every slot
    # would go to whoever was just answered. At random, each recent one has a chance.
    chosen: set[str] = set()
    for _ in range(20):
        log: list[tuple[str, bool]] = []
        slots = Slots(0, log)
        queue = _queue(slots, queue_timeout=0.1, overload_wait=0.02, reads_per_turn=1)
        _arrive(queue, "first", log)
        await asyncio.sleep(0.04)
        for i in range(3):
            _arrive(queue, f"r{i}", log)
        await asyncio.sleep(0.01)  # "first" waited 50 ms: more than arrival order serves
        slots.free = 1
        queue.slot_freed()
        await asyncio.sleep(0)
        chosen.add(log[0][0])
    assert "first" not in chosen
    assert len(chosen) >= 3


async def test_a_connection_that_closes_while_unread_is_forgotten() -> None:
    log: list[tuple[str, bool]] = []
    queue = _queue(Slots(0, log), queue_timeout=0.02)
    gone = Connection("gone", log)
    queue.park(gone)
    _arrive(queue, "stays", log)
    queue.forget(gone)
    await asyncio.sleep(0.04)
    assert log == [("stays", True)]


def test_the_queue_is_found_through_the_servers_wrappers() -> None:
    pytest.importorskip("starlette", reason="needs llmagentos[gateway]")
    from starlette.applications import Starlette

    app = Starlette()
    shedding = Shedding(SheddingLimits(max_in_flight=2))
    shed_first(app, shedding)

    class Wrapper:  # as uvicorn's proxy-headers middleware holds the app
        def __init__(self, app: object) -> None:
            self.app = app

    assert shedding.unread is not None
    assert unread_queue_of(Wrapper(Wrapper(app))) is shedding.unread
    assert unread_queue_of(Starlette()) is None
    off = Shedding(SheddingLimits(reads_per_turn=0))
    assert off.unread is None
    assert isinstance(LoadShedder(app, shedding=off), LoadShedder)


async def test_the_shedder_frees_a_slot_for_the_queue_and_refuses_a_marked_request() -> None:
    shedding = Shedding(SheddingLimits(max_in_flight=1, queue_timeout=0.5))
    assert shedding.unread is not None
    queue = shedding.unread
    queue.bind(asyncio.get_running_loop())
    release = asyncio.Event()
    statuses: list[int] = []

    async def app(scope: object, receive: object, send: object) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    shedder = LoadShedder(app, shedding=shedding)

    async def call(**scope: object) -> None:
        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(int(message["status"]))  # type: ignore[call-overload]

        await shedder({"type": "http", "path": "/x", "method": "GET", **scope}, receive, send)

    first = asyncio.ensure_future(call())
    await asyncio.sleep(0)
    assert not queue.take()  # the one slot is taken: a new request would wait unread
    log: list[tuple[str, bool]] = []
    queue.park(Connection("next", log))
    release.set()
    await first
    await asyncio.sleep(0)
    assert log == [("next", False)]  # the slot freed went to the one waiting
    await call(**{"llmagentos.unread_expired": True})
    assert statuses == [200, 503]
    assert shedding.stats()["shed"] == 0  # counted by the queue when it marks one


async def test_requests_read_but_not_yet_at_their_slot_count_against_the_room() -> None:
    # A request read in one turn takes its slot in a later one, when its task runs: a
    # burst arriving in one turn must not all be read on the strength of empty slots.
    from llmagentos.load_shedding import Gate

    gate = Gate(limit=2, max_queue=0, timeout=0.0)
    queue = UnreadQueue(
        gate.has_room, reads_per_turn=16, sheds_per_turn=4, queue_timeout=5.0,
        overload_wait=0.005,
    )  # fmt: skip
    gate.on_free = queue.slot_freed
    queue.bind(asyncio.get_running_loop())
    log: list[tuple[str, bool]] = []
    assert [_arrive(queue, f"r{i}", log) for i in range(5)] == [True, True, False, False, False]
    await asyncio.sleep(0)  # the next turn: the two read have not entered yet
    assert len(log) == 2
    assert await gate.enter() and await gate.enter()  # now they hold the slots
    queue.settle()
    queue.settle()  # as the shedder does, admitting them
    await asyncio.sleep(0)
    assert len(log) == 2
    gate.leave()  # one leaves: the oldest waiting is read
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert log[2:] == [("r2", False)]


async def test_past_the_longest_wait_every_waiting_request_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A flood faster than a turn's budget refuses must not leave clients to time out.
    import llmagentos.unread_queue

    monkeypatch.setattr(llmagentos.unread_queue, "MAX_UNREAD_WAIT", 0.05)
    log: list[tuple[str, bool]] = []
    queue = _queue(Slots(0, log), queue_timeout=0.01, sheds_per_turn=1)
    loop = asyncio.get_running_loop()
    busy_until = loop.time() + 0.06
    for i in range(20):
        _arrive(queue, f"r{i}", log)
    while loop.time() < busy_until:  # the loop held: no turn runs until past the wait
        pass
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(log) == 20 and all(expired for _, expired in log)
