"""The tool pool: bounded threads for sync tools, hung calls counted and capped.

Sync tools used to run with ``asyncio.to_thread``, on the event loop's default
executor. A thread cannot be stopped, so a sync tool that timed out kept its worker;
after a few hung calls every other ``to_thread`` user queued behind them. A
:class:`ToolPool` is the tools' own executor instead:

* at most ``max_workers`` threads run calls at once; further calls wait in a queue of
  at most ``max_queued`` (past it they are refused);
* a call that times out (or is cancelled) is answered at once; if it was running, its
  thread is *abandoned*: counted, no longer one of the ``max_workers``, and replaced,
  so the calls behind it go on;
* at most ``max_abandoned`` threads may be abandoned at once. At the cap a new sync call
  fails fast with :class:`~llmagentos.exceptions.ToolPoolExhausted` rather than queue
  behind threads that may never come back. An abandoned thread whose call ends at last
  is released: it counts again as a worker (or exits, when the pool has enough);
* :meth:`ToolPool.stats` reports the counts, for dashboards and tests.

The threads are daemons, so a hung tool never keeps the process from exiting. The
runtime's own blocking work never runs here (see :mod:`llmagentos._blocking`), and
tools never run there. Process-isolated tools (``@tool(isolation="process")``) go to the
pool's :attr:`ToolPool.processes`, where a call that times out is killed instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from llmagentos.exceptions import ConfigError, ToolPoolExhausted
from llmagentos.tools.isolation import ProcessPool

__all__ = ["ToolPool", "default_tool_pool", "set_default_tool_pool"]

_State = Literal["queued", "running", "abandoned", "done", "dropped"]
_IDLE_SECONDS = 30.0  # an idle worker thread exits after this long


@dataclass(eq=False)
class _Job:
    """One call: the work, and where its answer goes."""

    work: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    state: _State = "queued"


@dataclass
class _Counts:
    threads: int = 0  # alive, abandoned ones included
    idle: int = 0  # waiting for a job
    running: int = 0  # running a job someone still waits for
    abandoned: int = 0  # running a job nobody waits for any more
    calls: int = 0
    timed_out: int = 0  # calls given up while running (their threads abandoned)
    released: int = 0  # abandoned threads whose call ended after all
    refused: int = 0
    queue: deque[_Job] = field(default_factory=deque)


class ToolPool:
    """The threads (and worker processes) tool calls run on; see the module docstring.

    Args:
        max_workers: threads running calls at once.
        max_abandoned: threads that may be stuck in timed-out calls before new sync
            calls are refused.
        max_queued: calls that may wait for a thread before new ones are refused.
        max_processes: worker processes for process-isolated tools.
        name: the threads' name prefix.
    """

    def __init__(
        self,
        max_workers: int = 16,
        *,
        max_abandoned: int = 16,
        max_queued: int = 1024,
        max_processes: int = 4,
        name: str = "llmagentos-tool",
    ) -> None:
        for option, value in (
            ("max_workers", max_workers),
            ("max_abandoned", max_abandoned),
            ("max_queued", max_queued),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(option, f"must be an integer >= 1 (got {value!r})")
        self.max_workers = max_workers
        self.max_abandoned = max_abandoned
        self.max_queued = max_queued
        self.name = name
        self.processes = ProcessPool(max_processes)
        self._cond = threading.Condition()
        self._n = _Counts()
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return (
            f"ToolPool(max_workers={self.max_workers}, max_abandoned={self.max_abandoned}, "
            f"max_processes={self.processes.max_processes})"
        )

    # -- running a call --------------------------------------------------------------------

    async def run(
        self, func: Callable[..., Any], /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """``await`` ``func(*args, **kwargs)`` on a pool thread, with the caller's context
        variables, within ``timeout`` seconds (queueing included).

        Raises:
            ToolPoolExhausted: abandoned threads are at the cap, or the queue is full.
            TimeoutError: the call did not end in time (a running call's thread is
                abandoned; it is never waited for).
        """
        loop = asyncio.get_running_loop()
        work = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
        job = _Job(work, loop, loop.create_future())
        self._submit(job)
        try:
            return await asyncio.wait_for(job.future, timeout)
        except TimeoutError:
            where = self._drop(job)
            if where == "queued":
                raise TimeoutError(
                    f"still waiting for a tool thread: all {self.max_workers} busy"
                ) from None
            raise
        except asyncio.CancelledError:
            self._drop(job)
            raise

    def _submit(self, job: _Job) -> None:
        with self._cond:
            n = self._n
            if n.abandoned >= self.max_abandoned:
                n.refused += 1
                raise ToolPoolExhausted(
                    f"{n.abandoned} tool threads are stuck in calls that timed out (at most "
                    f"{self.max_abandoned}); sync tools run again as those calls end"
                )
            if len(n.queue) >= self.max_queued:
                n.refused += 1
                raise ToolPoolExhausted(
                    f"{len(n.queue)} calls already wait for a tool thread (at most "
                    f"{self.max_queued})"
                )
            n.calls += 1
            n.queue.append(job)
            self._staff()
            self._cond.notify()

    def _staff(self) -> None:
        """Start a thread if calls wait that no idle thread will take (lock held)."""
        n = self._n
        if len(n.queue) > n.idle and n.threads - n.abandoned < self.max_workers:
            n.threads += 1
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{next(self._ids)}", daemon=True
            )
            thread.start()

    def _drop(self, job: _Job) -> _State:
        """Give up on ``job`` (timed out or cancelled); returns the state it was in."""
        with self._cond:
            n = self._n
            state = job.state
            if state == "queued":
                n.queue.remove(job)
                job.state = "dropped"
            elif state == "running":
                job.state = "abandoned"
                n.running -= 1
                n.abandoned += 1
                n.timed_out += 1
                self._staff()  # its place among the workers is free: fill it if needed
            return state

    # -- the worker threads ------------------------------------------------------------------

    def _take(self) -> _Job | None:
        """The next job, or None when this thread should exit (lock held)."""
        n = self._n
        while not n.queue:
            n.idle += 1
            woke = self._cond.wait(_IDLE_SECONDS)
            n.idle -= 1
            if not woke and not n.queue:
                n.threads -= 1
                return None
        job = n.queue.popleft()
        job.state = "running"
        n.running += 1
        return job

    def _work(self) -> None:
        while True:
            with self._cond:
                job = self._take()
            if job is None:
                return
            try:
                outcome: tuple[bool, Any] = (True, job.work())
            except Exception as err:
                outcome = (False, err)
            except BaseException as err:  # SystemExit, KeyboardInterrupt: not the loop's
                outcome = (False, RuntimeError(f"the tool raised {type(err).__name__}"))
            with self._cond:
                n = self._n
                if job.state == "abandoned":
                    n.abandoned -= 1
                    n.released += 1
                else:
                    n.running -= 1
                job.state = "done"
                leave = n.threads - n.abandoned > self.max_workers
                if leave:
                    n.threads -= 1
            _settle(job, outcome)
            if leave:
                return

    # -- observing ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The pool's counts now: ``threads`` (sync tools) and ``processes`` (isolated)."""
        with self._cond:
            n = self._n
            threads = {
                "max_workers": self.max_workers,
                "max_abandoned": self.max_abandoned,
                "threads": n.threads,
                "busy": n.running,
                "idle": n.idle,
                "queued": len(n.queue),
                "abandoned": n.abandoned,
                "calls": n.calls,
                "timed_out": n.timed_out,
                "released": n.released,
                "refused": n.refused,
            }
        return {"threads": threads, "processes": self.processes.stats()}

    def close(self) -> None:
        """Stop the idle worker processes (threads end on their own when idle)."""
        self.processes.close()


def _settle(job: _Job, outcome: tuple[bool, Any]) -> None:
    """Hand ``outcome`` to the waiting coroutine, if it still waits."""
    ok, value = outcome

    def deliver() -> None:
        if job.future.done():  # timed out or cancelled meanwhile
            return
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
        job.loop.call_soon_threadsafe(deliver)


class _Default:
    lock = threading.Lock()
    pool: ToolPool | None = None


def default_tool_pool() -> ToolPool:
    """The process-wide pool that registries and tools use unless given their own."""
    with _Default.lock:
        if _Default.pool is None:
            _Default.pool = ToolPool()
        return _Default.pool


def set_default_tool_pool(pool: ToolPool | None) -> ToolPool | None:
    """Replace the process-wide pool (``None``: a new default on next use); returns the
    old one, which keeps running the calls it has."""
    with _Default.lock:
        old, _Default.pool = _Default.pool, pool
        return old


def _forget_after_fork() -> None:
    # The parent's threads do not exist in a forked child, nor does its lock's state.
    _Default.pool, _Default.lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
