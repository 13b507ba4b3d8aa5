"""Shedding load: past its limit a server answers at once, instead of slowing everyone.

A server that takes every request it is sent gets slower for all of them once it is
past its capacity, until clients time out. :class:`LoadShedder` (pure ASGI, outermost)
admits at most ``max_in_flight`` requests at a time, overall and, where a key is given
(the gateway's service), per key; a few more may wait in a bounded queue for at most
``queue_timeout`` seconds; the rest are answered ``503`` with ``Retry-After`` before
any other work is done for them. Probes (``/healthz``, ``/readyz``, ``/metrics``) are
never shed: an orchestrator must see a busy server as alive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmagentos.exceptions import ConfigError

__all__ = [
    "EVENT_LOOP", "PROBES", "SHEDDING_DEFAULTS", "Gate", "LoadShedder", "LoopLag", "Shedding",
    "SheddingLimits", "shed_first",
]  # fmt: skip

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})

EVENT_LOOP = "asyncio"
"""The event loop the servers run on (uvicorn's ``loop``): asyncio's own, not uvloop.
Past a few dozen busy connections uvloop leaves some of them unread for seconds (a
bare Starlette app at 128 connections: maximum latency 0.4-0.8 s against 32-65 ms on
asyncio's loop, for 5-10% fewer requests/s); those waits were the clients' timeouts
under overload (docs/gateway.md)."""


@dataclass(frozen=True, slots=True)
class SheddingLimits:
    """How much a server takes on at once.

    Attributes:
        max_in_flight: requests handled at the same time (``0``: no limit).
        max_queue: requests that may wait for a slot beyond those (the rest: 503).
        queue_timeout: seconds a request may wait for a slot before it is shed.
        retry_after: the ``Retry-After`` seconds a shed request is told.
        max_loop_lag: seconds the event loop may run behind before new requests are
            shed (``0``: never on lag). A server whose CPU is saturated queues work in
            its event loop, where no in-flight count sees it: requests that finish
            quickly once they run can keep the count low while each waits long to
            run. The lag is the delay of a 10 ms timer, measured continuously; only a
            lag that lasts (two wake-ups in a row) counts, so one pause (a garbage
            collection, a model loading) sheds nothing. A request that comes alone,
            the only one to start in its turn of the loop while no other is in
            flight, is never shed on lag: one client calling in turn (an agent's
            remote modules) cannot be what overloads the server (a busy machine, not
            its clients, makes it late).
        late_admissions: requests still admitted per wake-up of the lag timer (about
            each 10 ms of the loop's own pace) however late the loop runs, so an
            overloaded server keeps serving some (a count of those in flight would not
            do: quick requests leave before the next one arrives).
    """

    max_in_flight: int = 512
    max_queue: int = 512
    queue_timeout: float = 0.05
    retry_after: int = 1
    max_loop_lag: float = 0.05
    late_admissions: int = 4

    def __post_init__(self) -> None:
        for name in ("max_in_flight", "max_queue", "retry_after", "late_admissions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(name, f"must be an integer >= 0 (got {value!r})")
        timeout = self.queue_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ConfigError("queue_timeout", f"must be seconds >= 0 (got {timeout!r})")
        lag = self.max_loop_lag
        if isinstance(lag, bool) or not isinstance(lag, int | float) or lag < 0:
            raise ConfigError("max_loop_lag", f"must be seconds >= 0 (got {lag!r})")


SHEDDING_DEFAULTS = SheddingLimits()


class Gate:
    """At most ``limit`` holders at once; up to ``max_queue`` wait, first come first
    served, each for at most ``timeout`` seconds. A slot freed goes straight to the
    oldest waiter, so a newcomer never overtakes the queue."""

    __slots__ = ("in_flight", "limit", "max_queue", "shed", "timeout", "waiters")

    def __init__(self, limit: int, max_queue: int, timeout: float) -> None:
        self.limit, self.max_queue, self.timeout = limit, max_queue, timeout
        self.in_flight = 0
        self.shed = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def enter(self) -> bool:
        """Take a slot (``True``), or be refused one (``False``, counted in ``shed``)."""
        if self.in_flight < self.limit and not self.waiters:
            self.in_flight += 1
            return True
        if len(self.waiters) >= self.max_queue or self.timeout <= 0:
            self.shed += 1
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return True  # the slot arrived as the deadline passed: it is ours
            self._forget(waiter)
            self.shed += 1
            return False
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a slot, then cancelled: pass it on
            else:
                self._forget(waiter)
            raise
        return True

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        with contextlib.suppress(ValueError):  # already handed on by leave()
            self.waiters.remove(waiter)

    def leave(self) -> None:
        """Give the slot back: to the oldest waiter still waiting, else free it."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # in_flight unchanged: the slot changes hands
                return
        self.in_flight -= 1


class LoopLag:
    """How late the running event loop is: a timer's delay, measured every ``interval``.

    Started on first use inside the server's loop; the task ends with the loop.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lag = 0.0
        self.lasting = 0.0
        """The smaller of the last two lags: high only while the loop stays late."""
        self.ticks = 0
        """Wake-ups so far: a clock in units of the loop's own pace."""
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - started - self.interval)
            self.lasting, self.lag = min(lag, self.lag), lag
            self.ticks += 1


class Shedding:
    """The gates of one server: overall and per key (see :class:`LoadShedder`).

    Args:
        limits: the overall limits.
        key: the per-key part of a request (``scope -> key | None``), e.g. its service.
        key_limit: the ``max_in_flight`` of a key (``None``: only the overall limit).
            Asked once per key; only keys it gives a limit get a gate of their own, so
            made-up keys cannot grow the table.
        what: how a refusal names this server ("the gateway", "the service").
    """

    def __init__(
        self,
        limits: SheddingLimits,
        *,
        key: Callable[[dict[str, Any]], str | None] | None = None,
        key_limit: Callable[[str], int | None] | None = None,
        what: str = "the server",
    ) -> None:
        self.limits, self.key, self.key_limit, self.what = limits, key, key_limit, what
        unlimited = 2**62
        self.overall = Gate(
            limits.max_in_flight or unlimited, limits.max_queue, limits.queue_timeout
        )
        self.gates: dict[str, Gate] = {}
        self.loop_lag = LoopLag()
        self.shed_on_lag = 0
        self._late_tick, self._late_admitted = -1, 0
        self._this_turn = 0  # requests started in this turn of the loop, while late
        self.headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", str(limits.retry_after).encode()),
        ]

    def gate_for(self, scope: dict[str, Any]) -> Gate | None:
        """The request's own gate beside the overall one, if its key has a limit."""
        if self.key is None or self.key_limit is None:
            return None
        name = self.key(scope)
        if name is None:
            return None
        gate = self.gates.get(name)
        if gate is None:
            limit = self.key_limit(name)
            if limit is None:
                return None  # not remembered: the registry may give it a limit later
            gate = self.gates[name] = Gate(limit, self.limits.max_queue, self.limits.queue_timeout)
        return gate

    def behind(self) -> bool:
        """Whether the loop runs too late to take more work (then counted as shed)."""
        limits = self.limits
        if not limits.max_loop_lag:
            return False
        watch = self.loop_lag
        watch.ensure_running()
        if watch.lasting <= limits.max_loop_lag:
            return False
        # Requests that start in the same turn of the loop came at the same time: a
        # flood. A count of those in flight alone cannot see it, since a quick request
        # finishes within its turn, before the next one is read.
        started = self._this_turn
        if not started:
            asyncio.get_running_loop().call_soon(self._next_turn)  # runs in the next turn
        self._this_turn = started + 1
        if not started and not self.overall.in_flight:
            return False  # alone: one client calling in turn
        if watch.ticks != self._late_tick:
            self._late_tick, self._late_admitted = watch.ticks, 0
        if self._late_admitted < limits.late_admissions:
            self._late_admitted += 1
            return False
        self.shed_on_lag += 1
        return True

    def _next_turn(self) -> None:
        self._this_turn = 0

    def forget(self, name: str) -> None:
        """Drop a key's gate (its limit changed, or it is gone); requests in flight
        give their slots back to the gate they hold."""
        self.gates.pop(name, None)

    def stats(self) -> dict[str, Any]:
        """In flight, waiting and shed so far: overall and per key."""
        gates = self.gates
        return {
            "max_in_flight": self.limits.max_in_flight,
            "in_flight": self.overall.in_flight,
            "waiting": len(self.overall.waiters),
            "shed": self.overall.shed + self.shed_on_lag + sum(g.shed for g in gates.values()),
            "loop_lag_ms": round(self.loop_lag.lag * 1000, 2),
            "services": {
                name: {
                    "max_in_flight": g.limit, "in_flight": g.in_flight,
                    "waiting": len(g.waiters), "shed": g.shed,
                }
                for name, g in gates.items()
            },
        }  # fmt: skip


class LoadShedder:
    """Pure ASGI middleware shedding what is past ``shedding``'s limits (module
    docstring). Put it first, so a shed request costs nothing else."""

    def __init__(self, app: Any, *, shedding: Shedding) -> None:
        self.app, self.shedding = app, shedding

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        shedding = self.shedding
        if shedding.behind():
            late = shedding.loop_lag.lasting * 1000
            await self._shed(send, f"an event loop {late:.0f} ms behind")
            return
        gate = shedding.gate_for(scope)
        if gate is not None and not await gate.enter():
            await self._shed(send, f"{gate.limit} requests in flight for this service")
            return
        try:
            if not await shedding.overall.enter():
                await self._shed(send, f"{shedding.limits.max_in_flight} requests in flight")
                return
            try:
                await self.app(scope, receive, send)
            finally:
                shedding.overall.leave()
        finally:
            if gate is not None:
                gate.leave()

    async def _shed(self, send: Any, detail: str) -> None:
        shedding = self.shedding
        message = f"overloaded: {shedding.what} has {detail}; retry after "
        body = json.dumps({"detail": f"{message}{shedding.limits.retry_after} s"}).encode()
        headers = [*shedding.headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def shed_first(app: Any, shedding: Shedding) -> None:
    """Put a :class:`LoadShedder` around the whole of a Starlette (or FastAPI) ``app``,
    outside even its error middlewares, which ``add_middleware`` cannot reach: a shed
    request then costs the server nothing but the answer."""
    build = app.build_middleware_stack

    def shedding_first() -> Any:
        return LoadShedder(build(), shedding=shedding)

    app.build_middleware_stack = shedding_first  # Starlette builds its stack on first call
