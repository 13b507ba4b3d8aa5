"""The requests a server has not read yet: under overload the excess waits in its socket.

A server past its capacity that reads every request it is sent spends its event loop
on reading, parsing and refusing the flood, and the requests it admits wait behind
that work. Worse, a client in a closed loop (each connection sends its next request as
soon as it has an answer) sends faster the faster it is refused, so cheaper refusals
only make the flood bigger. :class:`UnreadQueue` reads less instead:

* at most ``reads_per_turn`` new requests are read per turn of the event loop, and only
  while the server has a free slot; the others stay unread in their sockets (the
  connection paused: TCP backpressure, no work for the server) in arrival order;
* a slot freed goes to the oldest unread request, as long as arrival order would read
  every one waiting within ``queue_timeout``. Past that (more wait than the server read
  in the last ``queue_timeout``, the oldest for more than ``overload_wait``: an
  overload, not a burst), arrival order would have every request wait about as long as
  the connections divided by the throughput, past any deadline: a freed slot then goes
  to a request chosen at random among those that came within the last
  ``overload_wait`` seconds, if any (CoDel's short target, as in Facebook's
  controlled-delay queues; their adaptive LIFO took the newest, which starved any
  client slower to send than the flood);
* a request left unread ``queue_timeout`` seconds is read and answered 503 with
  ``Retry-After`` (the protocol marks it; :class:`~llmagentos.load_shedding.LoadShedder`
  answers it), at most ``sheds_per_turn`` per turn, so refusing a flood takes a bounded
  share of the loop; the rest wait their turn to be refused, but never past
  :data:`MAX_UNREAD_WAIT`.

Health probes (the shedder's ``PROBES``: ``GET /healthz`` and the like) are never left
unread.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import random
from collections.abc import Callable, Iterable
from typing import Protocol

__all__ = [
    "COMING", "EXPIRED", "MAX_UNREAD_WAIT", "UNREAD_ATTRIBUTE", "Unread", "UnreadQueue",
    "probe_lines", "unread_queue_of",
]  # fmt: skip


def probe_lines(paths: Iterable[str]) -> tuple[bytes, ...]:
    """How a probe's request line begins (``GET`` or ``HEAD`` of one of ``paths``): such
    a request is read at once, whatever the load."""
    return tuple(
        f"{method} {path}{end}".encode()
        for method in ("GET", "HEAD")
        for path in sorted(paths)
        for end in (" ", "?")
    )


EXPIRED = "llmagentos.unread_expired"
"""The ASGI scope key marking a request read only to be refused (it waited too long)."""

MAX_UNREAD_WAIT = 0.5
"""Seconds after which a request still unread is refused whatever the turn's budget: a
flood faster than the budget refuses must not make clients time out."""

COMING = "llmagentos.unread_coming"
"""The ASGI scope key of a request read to be served: a callable, to be called once the
shedder has admitted or refused it (:meth:`UnreadQueue.settle`, through the protocol)."""

UNREAD_ATTRIBUTE = "llmagentos_unread_queue"
"""The app attribute holding its :class:`UnreadQueue`, for the HTTP protocol to find."""


def unread_queue_of(app: object) -> UnreadQueue | None:
    """The queue of ``app``, looked for through the ASGI wrappers around it (uvicorn's
    proxy-headers middleware and the like, each holding the next as ``app``)."""
    for _ in range(8):
        queue = getattr(app, UNREAD_ATTRIBUTE, None)
        if isinstance(queue, UnreadQueue):
            return queue
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class Unread(Protocol):
    """A connection whose next request waits unread (the HTTP protocol)."""

    def unpark(self, *, expired: bool) -> None:
        """Read the request: to be served, or (``expired``) to be answered 503."""


class UnreadQueue:
    """The unread requests of one server (module docstring).

    Args:
        room: whether the server has a free slot for one more request beyond the given
            number read but not yet admitted or refused (:attr:`coming`).
        reads_per_turn: new requests read per turn of the loop.
        sheds_per_turn: requests refused for their wait per turn of the loop.
        queue_timeout: seconds a request may wait unread for a slot.
        overload_wait: under a lasting overload, how recent a request must be to get a
            freed slot.
        probes: the paths read at once, never left unread.
    """

    def __init__(
        self,
        room: Callable[[int], bool],
        *,
        reads_per_turn: int,
        sheds_per_turn: int,
        queue_timeout: float,
        overload_wait: float,
        probes: Iterable[str] = (),
    ) -> None:
        self.room = room
        self.probe_lines = probe_lines(probes)
        """Request-line beginnings (``GET /healthz ``, ...) read at once."""
        self.reads_per_turn, self.sheds_per_turn = reads_per_turn, sheds_per_turn
        self.queue_timeout, self.overload_wait = queue_timeout, overload_wait
        self.waiting: collections.deque[tuple[Unread, float]] = collections.deque()
        self.expired = 0
        """Requests refused for waiting unread past ``queue_timeout``."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.coming = 0
        """Requests read to be served that have not reached their slot yet (a request
        read in one turn of the loop takes its slot in a later one). Each is settled
        (:meth:`settle`) once: when the shedder admits or refuses it, when the rest of
        it is still to come (a slow body holds no room), or when its connection ends."""
        self._read = 0  # new requests read in this turn of the loop
        self._turn_pending = False
        self._timer: asyncio.TimerHandle | None = None
        # Requests read per turn over the last ``queue_timeout`` (time, count), and
        # their sum: how many the server takes in within one deadline, now.
        self._reads: collections.deque[tuple[float, int]] = collections.deque()
        self._reads_in_deadline = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` (the server's, given by its first connection)."""
        self._loop = loop

    def take(self) -> bool:
        """Whether a new request may be read now (else the caller :meth:`park`\\ s it)."""
        self._next_turn()
        if self._read < self.reads_per_turn and not self.waiting and self._room():
            self._read += 1
            self.coming += 1
            return True
        return False

    def settle(self) -> None:
        """One request read (by :meth:`take`, or unparked to be served) has reached its
        slot, been refused, or gone."""
        self.coming -= 1

    def park(self, connection: Unread) -> None:
        """Leave ``connection``'s request unread until a slot, or its deadline."""
        assert self._loop is not None, "bind() the queue to the server's loop first"
        now = self._loop.time()
        self.waiting.append((connection, now))
        if self._timer is None:
            self._timer = self._loop.call_at(now + self.queue_timeout, self._on_deadline)

    def forget(self, connection: Unread) -> None:
        """Drop a connection that closed while its request waited."""
        for index, (waiting, _) in enumerate(self.waiting):
            if waiting is connection:
                del self.waiting[index]
                return

    def slot_freed(self) -> None:
        """A request left: the next turn may read one that waits."""
        if self.waiting:
            self._next_turn()

    def _room(self) -> bool:
        return self.room(self.coming)

    def _next_turn(self) -> None:
        if not self._turn_pending and self._loop is not None:
            self._turn_pending = True
            self._loop.call_soon(self._turn)

    def _turn(self) -> None:
        self._turn_pending = False
        if self._read and self._loop is not None:
            self._reads.append((self._loop.time(), self._read))
            self._reads_in_deadline += self._read
        self._read = 0
        self._serve()

    def overloaded(self, now: float) -> bool:
        """Whether more wait than would be read, in arrival order, within their deadline
        (at the pace of the last ``queue_timeout``), the oldest of them for more than
        ``overload_wait`` already (a burst on an idle server is read in order)."""
        reads, since = self._reads, now - self.queue_timeout
        while reads and reads[0][0] < since:
            self._reads_in_deadline -= reads.popleft()[1]
        waiting = self.waiting
        if not waiting or waiting[0][1] > now - self.overload_wait:
            return False
        return len(waiting) > max(self._reads_in_deadline, self.reads_per_turn)

    def _on_deadline(self) -> None:
        self._timer = None
        self._next_turn()  # refusals count against a turn's budget, like reads

    def _serve(self) -> None:
        waiting, loop = self.waiting, self._loop
        if not waiting or loop is None:
            return
        now = loop.time()
        self._refuse_expired(now)
        overloaded = self.overloaded(now)
        within_deadline, recent = now - self.queue_timeout, now - self.overload_wait
        while waiting and self._read < self.reads_per_turn and self._room():
            if waiting[-1][1] < within_deadline:
                break  # only requests past their deadline: refused a few per turn
            if overloaded and waiting[-1][1] >= recent:  # one of the recent, at random
                index = random.randrange(
                    bisect.bisect_left(waiting, recent, key=_arrival), len(waiting)
                )
            else:  # the oldest within its deadline
                index = bisect.bisect_left(waiting, within_deadline, key=_arrival)
            connection, _ = waiting[index]
            del waiting[index]
            self._read += 1
            self.coming += 1
            connection.unpark(expired=False)
        if not waiting:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._read >= self.reads_per_turn or waiting[0][1] + self.queue_timeout <= now:
            self._next_turn()  # more to read (or refuse) next turn, once others have run
        if self._timer is None:
            self._timer = loop.call_at(waiting[0][1] + self.queue_timeout, self._on_deadline)

    def _refuse_expired(self, now: float) -> None:
        waiting, oldest = self.waiting, now - self.queue_timeout
        budget, overdue = self.sheds_per_turn, now - MAX_UNREAD_WAIT
        while waiting and waiting[0][1] <= oldest and (budget or waiting[0][1] <= overdue):
            connection, _ = waiting.popleft()
            budget = max(0, budget - 1)
            self.expired += 1
            connection.unpark(expired=True)
        if waiting and waiting[0][1] <= oldest and self._timer is not None:
            self._timer.cancel()  # the next turn goes on refusing
            self._timer = None


def _arrival(entry: tuple[Unread, float]) -> float:
    return entry[1]
