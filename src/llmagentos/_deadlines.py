"""Deadlines for the many short waits of a server's hot path: one timer per event loop,
not one per wait.

Every proxied request waits under deadlines: for its body (the shedder's
``body_timeout``), for the replica's reply (the route's timeout), and after its
response for the next request on the connection (the server's keep-alive). Each
``asyncio.timeout`` or ``loop.call_at`` makes a timer handle and pushes it on the loop's
heap (2.7-4 us a wait, measured, on either loop), although nearly every such deadline
is cancelled long before it comes. Here a wait adds an entry to a dict and removes it
(about 0.2 us), and one timer per loop sweeps the entries every :data:`TICK` seconds
while there are any. A deadline therefore fires up to :data:`TICK` late: right for
timeouts counted in seconds, wrong for anything that must be punctual.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Callable
from types import TracebackType

__all__ = ["TICK", "CoarseHandle", "Deadlines", "coarse_timeout", "deadlines"]

#: Seconds between sweeps: how late a deadline may fire.
TICK = 0.05


class Deadlines:
    """Callbacks run once their deadline (the loop's clock) has passed, swept every
    :data:`TICK` seconds by one timer that runs only while any is registered."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._entries: dict[int, tuple[float, Callable[[], object]]] = {}
        self._keys = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, when: float, callback: Callable[[], object]) -> int:
        """Run ``callback`` once the loop's time passes ``when``; the key cancels it."""
        key = next(self._keys)
        self._entries[key] = (when, callback)
        if self._timer is None:
            self._timer = self._loop.call_later(TICK, self._sweep)
        return key

    def cancel(self, key: int) -> None:
        """Forget ``key``'s callback (nothing happens if it has run)."""
        self._entries.pop(key, None)

    def call_later(self, delay: float, callback: Callable[[], object]) -> CoarseHandle:
        """:meth:`add` in ``delay`` seconds, as a handle with ``cancel()`` (what code
        written for ``loop.call_later`` keeps and cancels)."""
        return CoarseHandle(self, self.add(self._loop.time() + delay, callback))

    def __len__(self) -> int:
        return len(self._entries)

    def _sweep(self) -> None:
        now = self._loop.time()
        entries = self._entries
        due = [key for key, (when, _) in entries.items() if when <= now]
        for key in due:
            _, callback = entries.pop(key)
            callback()
        self._timer = self._loop.call_later(TICK, self._sweep) if entries else None


class CoarseHandle:
    """A deadline's ``cancel()``, as an :class:`asyncio.TimerHandle` has it."""

    __slots__ = ("_deadlines", "_key")

    def __init__(self, owner: Deadlines, key: int) -> None:
        self._deadlines, self._key = owner, key

    def cancel(self) -> None:
        self._deadlines.cancel(self._key)


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)


_LAST: list[Deadlines] = []  # the last one asked for: a server asks from one loop


def deadlines() -> Deadlines:
    """The running loop's :class:`Deadlines`."""
    loop = asyncio.get_running_loop()
    if _LAST and _LAST[0]._loop is loop:
        return _LAST[0]  # no weak reference made for the look-up
    found = _BY_LOOP.get(loop)
    if found is None:
        found = _BY_LOOP[loop] = Deadlines(loop)
    _LAST[:] = [found]
    return found


class coarse_timeout:  # lower case: used as asyncio.timeout is
    """``with coarse_timeout(when):`` — ``asyncio.timeout_at(when)`` on :class:`Deadlines`:
    past ``when`` (up to :data:`TICK` later) the task is cancelled inside the block and
    the block raises :class:`TimeoutError`. A plain ``with``: entering costs no await.
    """

    __slots__ = ("_deadlines", "_key", "_task", "expired", "when")

    def __init__(self, when: float) -> None:
        self.when = when
        self.expired = False

    def __enter__(self) -> coarse_timeout:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop at all
            task = None
        if task is None:
            raise RuntimeError("coarse_timeout must be used inside a task")
        self._task = task
        self._deadlines = deadlines()
        self._key = self._deadlines.add(self.when, self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:  # fmt: skip
        self._deadlines.cancel(self._key)
        # The cancellation is ours, unless someone else cancelled the task as well.
        if self.expired and kind is asyncio.CancelledError and self._task.uncancel() == 0:
            raise TimeoutError from error
