"""Shedding load: past its limit a server answers at once, instead of slowing everyone.

A server that takes every request it is sent gets slower for all of them once it is
past its capacity, until clients time out. :class:`LoadShedder` (pure ASGI, outermost)
admits at most ``max_in_flight`` requests at a time, overall and, where a key is given
(the gateway's service), per key; a few more may wait in a bounded queue for at most
``queue_timeout`` seconds; the rest are answered ``503`` with ``Retry-After`` before
any other work is done for them. Probes (``/healthz``, ``/readyz``, ``/metrics``) are
never shed: an orchestrator must see a busy server as alive.

A request's body is read before it takes a slot, within ``body_timeout`` seconds of its
headers, then handed to the app as if it had just arrived: a client that sends its body
slowly (or never) holds a connection, not one of the ``max_in_flight`` slots, and is
answered ``408`` (connection closed) at the deadline. A request without a body (no
``Content-Length``, no ``Transfer-Encoding``), or whose server marks it whole already
(:data:`BODY_IN`: it came in the same read as its head, as nearly every small one
does), is admitted without that read.

Under the servers' HTTP protocol a request past the limit is not even read: it waits in
its socket (:mod:`llmagentos.unread_queue`), so a flood costs the server little.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmagentos._deadlines import coarse_timeout
from llmagentos.exceptions import ConfigError
from llmagentos.unread_queue import COMING, EXPIRED, UNREAD_ATTRIBUTE, UnreadQueue

__all__ = [
    "BODY_IN", "EVENT_LOOP", "PROBES", "SHEDDING_DEFAULTS", "Gate", "LoadShedder", "LoopLag",
    "Shedding", "SheddingLimits", "declared_length", "shed_first",
]  # fmt: skip

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})

BODY_IN = "llmagentos.body_in"
"""The ASGI scope key a server sets (to ``True``) once a request's whole body is in its
buffer: ``receive`` will give it at once, so the shedder need not read it first."""

EVENT_LOOP = "asyncio"
"""The event loop the servers run on (uvicorn's ``loop``): asyncio's own, not uvloop.
Past a few dozen busy connections uvloop leaves some of them unread for seconds (a
bare Starlette app at 128 connections: maximum latency 0.4-0.8 s against 32-65 ms on
asyncio's loop); those waits were the clients' timeouts under overload. The unread
queue does not cure it: on uvloop the gateway serves 12-15% more requests/s, but at
10x capacity 5 of 7 runs of the overload benchmark had admitted requests waiting
0.5-1.4 s, unread by the loop (docs/gateway.md)."""


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
        body_timeout: seconds a request's body may take to arrive, from its headers;
            it is read before the request takes a slot, so a slow body holds none.
            Past the deadline: ``408`` and the connection closed (``0``: no deadline,
            and the app reads the body under its slot).
        reads_per_turn: new requests read per turn of the event loop, and only while a
            slot is free; the others wait unread in their sockets, each at most
            ``queue_timeout`` (:mod:`llmagentos.unread_queue`; ``0``: read every
            request as it comes). Needs the servers' HTTP protocol
            (:mod:`llmagentos._http_protocol`); elsewhere requests are read as they come.
        sheds_per_turn: requests that waited unread past ``queue_timeout`` answered
            ``503`` per turn of the loop (>= 1), so refusing a flood takes a bounded
            share of it.
        overload_wait: once more requests wait unread than were read in the last
            ``queue_timeout``, the oldest for longer than this, how recent an unread
            request must be to get a freed slot; the others are shed at their deadline.
    """

    max_in_flight: int = 512
    max_queue: int = 512
    queue_timeout: float = 0.05
    retry_after: int = 1
    max_loop_lag: float = 0.05
    late_admissions: int = 4
    body_timeout: float = 15.0
    reads_per_turn: int = 16
    sheds_per_turn: int = 8
    overload_wait: float = 0.005

    def __post_init__(self) -> None:
        for name in (
            "max_in_flight", "max_queue", "retry_after", "late_admissions", "reads_per_turn",
            "sheds_per_turn",
        ):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(name, f"must be an integer >= 0 (got {value!r})")
        if self.sheds_per_turn < 1:
            raise ConfigError(
                "sheds_per_turn", "must be >= 1: else a request left unread waits forever"
            )
        for name in ("queue_timeout", "max_loop_lag", "body_timeout", "overload_wait"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(name, f"must be seconds >= 0 (got {value!r})")


SHEDDING_DEFAULTS = SheddingLimits()


class Gate:
    """At most ``limit`` holders at once; up to ``max_queue`` wait, first come first
    served, each for at most ``timeout`` seconds. A slot freed goes straight to the
    oldest waiter, so a newcomer never overtakes the queue."""

    __slots__ = ("in_flight", "limit", "max_queue", "on_free", "shed", "timeout", "waiters")

    def __init__(self, limit: int, max_queue: int, timeout: float) -> None:
        self.limit, self.max_queue, self.timeout = limit, max_queue, timeout
        self.in_flight = 0
        self.shed = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.on_free: Callable[[], None] | None = None
        """Called when a slot is freed with nobody waiting for it."""

    def has_room(self, coming: int = 0) -> bool:
        """Whether one more would be admitted at once, after ``coming`` others."""
        return self.in_flight + coming < self.limit and not self.waiters

    def try_enter(self) -> bool:
        """Take a free slot at once (``True``); ``False`` leaves the rest to :meth:`enter`
        (no coroutine when there is room, as there nearly always is)."""
        if self.in_flight < self.limit and not self.waiters:
            self.in_flight += 1
            return True
        return False

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
        if self.on_free is not None:
            self.on_free()


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
        max_body_bytes: the most of a body read before its request takes a slot (the
            app's own body limit, where it has one). A larger body is not buffered
            whole: the app reads the rest under its slot, still by ``body_timeout``,
            and refuses it by its own limit.
    """

    def __init__(
        self,
        limits: SheddingLimits,
        *,
        key: Callable[[dict[str, Any]], str | None] | None = None,
        key_limit: Callable[[str], int | None] | None = None,
        what: str = "the server",
        max_body_bytes: int = 1 << 20,
    ) -> None:
        if max_body_bytes < 1:
            raise ConfigError("max_body_bytes", f"must be >= 1 (got {max_body_bytes})")
        self.limits, self.key, self.key_limit, self.what = limits, key, key_limit, what
        self.max_body_bytes = max_body_bytes
        self.body_timeouts = 0
        """Requests answered 408: their body did not arrive within ``body_timeout``."""
        unlimited = 2**62
        self.overall = Gate(
            limits.max_in_flight or unlimited, limits.max_queue, limits.queue_timeout
        )
        self.gates: dict[str, Gate] = {}
        self.unread: UnreadQueue | None = None
        """Requests left unread past the limit (``reads_per_turn``; the servers' HTTP
        protocol finds it through :func:`shed_first`)."""
        if limits.reads_per_turn:
            self.unread = UnreadQueue(
                self.overall.has_room, reads_per_turn=limits.reads_per_turn,
                sheds_per_turn=limits.sheds_per_turn, queue_timeout=limits.queue_timeout,
                overload_wait=limits.overload_wait, probes=PROBES,
            )  # fmt: skip
            self.overall.on_free = self.unread.slot_freed
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

    async def enter(self, scope: dict[str, Any]) -> tuple[Gate | None, str | None]:
        """Take a request's slots, overall and its key's (where the key has a limit):
        ``(gate, None)`` once held (give them back with :meth:`leave`), or ``(None,
        why)`` when it is shed."""
        if scope.get(EXPIRED):
            wait = self.limits.queue_timeout * 1000
            return None, f"more requests than it could read within {wait:g} ms"
        if self.behind():
            return None, f"an event loop {self.loop_lag.lasting * 1000:.0f} ms behind"
        gate = self.gate_for(scope)
        if gate is not None and not (gate.try_enter() or await gate.enter()):
            return None, f"{gate.limit} requests in flight for this service"
        overall = self.overall
        try:
            entered = overall.try_enter() or await overall.enter()
        except BaseException:  # cancelled while waiting: the key's slot goes back too
            if gate is not None:
                gate.leave()
            raise
        if not entered:
            if gate is not None:
                gate.leave()
            return None, f"{self.limits.max_in_flight} requests in flight"
        return gate, None

    def leave(self, gate: Gate | None) -> None:
        """Give back the slots :meth:`enter` took."""
        self.overall.leave()
        if gate is not None:
            gate.leave()

    def shed_reply(self, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The headers and body of a ``503`` for a request shed because of ``detail``."""
        message = f"overloaded: {self.what} has {detail}; retry after "
        body = json.dumps({"detail": f"{message}{self.limits.retry_after} s"}).encode()
        return [*self.headers, (b"content-length", str(len(body)).encode())], body

    def too_slow_reply(self) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The headers and body of a ``408`` for a body past ``body_timeout`` (counted)."""
        self.body_timeouts += 1
        seconds = self.limits.body_timeout
        detail = f"the request body did not arrive within body_timeout ({seconds:g} s)"
        body = json.dumps({"detail": detail, "field": "body"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the rest of the body may still come: not ours
        ]
        return headers, body

    @property
    def unread_expired(self) -> int:
        """Requests refused for waiting unread past ``queue_timeout``."""
        return self.unread.expired if self.unread is not None else 0

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
            "shed": self.overall.shed + self.shed_on_lag + self.unread_expired
            + sum(g.shed for g in gates.values()),
            "unread": len(self.unread.waiting) if self.unread is not None else 0,
            "loop_lag_ms": round(self.loop_lag.lag * 1000, 2),
            "body_timeouts": self.body_timeouts,
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
        settle = scope.get(COMING)  # read by the unread queue: it counts until settled
        if scope["type"] != "http" or scope["path"] in PROBES:
            if settle is not None:
                settle()
            await self.app(scope, receive, send)
            return
        shedding = self.shedding
        streamed: _Streamed | None = None
        if shedding.limits.body_timeout and not scope.get(BODY_IN):
            declared = declared_length(scope.get("headers", ()))
            if declared:  # a body to read before taking a slot
                read = await self._read_body(receive, send, declared)
                if read is None:
                    if settle is not None:
                        settle()
                    return  # answered 408, or the client went away
                receive, streamed = read
                if streamed is not None:
                    send = streamed.send
        if settle is not None:
            settle()  # admitted or refused below, within this step: no other runs between
        gate, refused = await shedding.enter(scope)
        if refused is not None:
            await self._shed(send, refused)
            return
        try:
            if streamed is None:
                await self.app(scope, receive, send)
            else:
                await self._stream(streamed, scope)
        finally:
            shedding.leave(gate)

    async def _read_body(
        self, receive: Any, send: Any, declared: int
    ) -> tuple[Any, _Streamed | None] | None:
        """The request's ``receive`` with its body read (``None``: answered, or gone).

        A body past ``max_body_bytes`` (read or declared) is not buffered whole: a
        :class:`_Streamed` then hands the app what was read and the rest as it comes.
        """
        shedding = self.shedding
        limit = shedding.max_body_bytes
        chunks: list[bytes] = []
        message: dict[str, Any] | None = None
        loop_time = asyncio.get_running_loop().time()
        try:
            with coarse_timeout(loop_time + shedding.limits.body_timeout) as deadline:
                if declared <= limit:  # -1 (chunked): read, and see
                    size = 0
                    while True:
                        message = await receive()
                        if message["type"] != "http.request":
                            return None  # http.disconnect: nobody to answer
                        if not message.get("more_body", False):
                            break
                        chunk = message.get("body", b"")
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > limit:
                            message = None
                            break
        except TimeoutError:
            await self._too_slow(send)
            return None
        if message is not None:  # the whole body
            if not chunks:
                return _replay(message, receive), None
            chunks.append(message.get("body", b""))
            whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return _replay(whole, receive), None
        streamed = _Streamed(b"".join(chunks), receive, send, deadline.when)
        return streamed.receive, streamed

    async def _stream(self, streamed: _Streamed, scope: Any) -> None:
        """Run the app on a body too large to buffer; past the deadline, 408."""
        try:
            await self.app(scope, streamed.receive, streamed.send)
        except Exception:
            if not streamed.timed_out:
                raise
            # The app saw the client go away (the deadline's http.disconnect) and gave up.
        if streamed.timed_out and not streamed.started:
            await self._too_slow(streamed.send)

    async def _shed(self, send: Any, detail: str) -> None:
        headers, body = self.shedding.shed_reply(detail)
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _too_slow(self, send: Any) -> None:
        headers, body = self.shedding.too_slow_reply()
        await send({"type": "http.response.start", "status": 408, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def declared_length(headers: Any) -> int:
    """A request's declared body length: ``0`` for none, ``-1`` when unknown (chunked, or
    a length that is not a plain number)."""
    declared = 0
    for name, value in headers:
        if name == b"transfer-encoding":
            return -1
        if name == b"content-length":
            if not value.isdigit():
                return -1  # the server would not pass it on; read, and see
            declared = int(value) if len(value) < 19 else 1 << 62
    return declared


def _replay(message: dict[str, Any], receive: Any) -> Any:
    """A ``receive`` that gives the body read beforehand, then what the client sends."""
    pending: dict[str, Any] | None = message

    async def replay() -> Any:
        nonlocal pending
        if pending is None:
            return await receive()  # only the disconnect is left
        given, pending = pending, None
        return given

    return replay


class _Streamed:
    """The ``receive`` and ``send`` of a body too large to buffer: what was read, then
    the rest as it comes, by the same deadline. Past it, the app is told the client went
    away (``http.disconnect``), and the request is answered 408 unless the app already
    answered."""

    __slots__ = ("_receive", "_send", "deadline", "done", "read", "started", "timed_out")

    def __init__(self, read: bytes, receive: Any, send: Any, deadline: float) -> None:
        self.read: bytes | None = read or None
        self._receive, self._send, self.deadline = receive, send, deadline
        self.done = self.started = self.timed_out = False

    async def receive(self) -> Any:
        if self.read is not None:
            read, self.read = self.read, None
            return {"type": "http.request", "body": read, "more_body": True}
        if self.done:
            return await self._receive()
        if self.timed_out:
            return {"type": "http.disconnect"}
        try:
            with coarse_timeout(self.deadline):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def shed_first(app: Any, shedding: Shedding) -> None:
    """Put a :class:`LoadShedder` around the whole of a Starlette (or FastAPI) ``app``,
    outside even its error middlewares, which ``add_middleware`` cannot reach: a shed
    request then costs the server nothing but the answer."""
    build = app.build_middleware_stack

    def shedding_first() -> Any:
        return LoadShedder(build(), shedding=shedding)

    app.build_middleware_stack = shedding_first  # Starlette builds its stack on first call
    if shedding.unread is not None:  # found by the servers' HTTP protocol
        setattr(app, UNREAD_ATTRIBUTE, shedding.unread)
