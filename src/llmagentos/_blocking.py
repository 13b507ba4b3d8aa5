"""The runtime's own blocking work, on a pool of its own.

``asyncio.to_thread`` runs on the loop's default executor, which anything may fill:
a few sync tools that hang would leave the runtime's short blocking calls (DNS
lookups of the SSRF guard, scrypt checks of API keys, session-store and journal I/O)
queued behind them. Those calls go through :func:`run_blocking` instead: a separate,
bounded pool that only llmagentos' own code uses, never user code of unknown length.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["blocking_executor", "run_blocking"]

P = ParamSpec("P")
T = TypeVar("T")

_MAX_WORKERS = min(32, (os.cpu_count() or 1) + 4)


class _Pool:
    """The one pool of this process, made on first use."""

    lock = threading.Lock()
    executor: ThreadPoolExecutor | None = None


def blocking_executor() -> ThreadPoolExecutor:
    """The runtime's pool (made on first use; a forked child makes its own)."""
    with _Pool.lock:
        if _Pool.executor is None:
            _Pool.executor = ThreadPoolExecutor(_MAX_WORKERS, thread_name_prefix="llmagentos-io")
        return _Pool.executor


def _forget_after_fork() -> None:
    # The parent's threads do not exist in the child, nor does the state of its lock.
    _Pool.executor, _Pool.lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


async def run_blocking(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``await`` ``func(*args, **kwargs)`` run on the runtime's pool, with the caller's
    context variables (as ``asyncio.to_thread`` does)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor(blocking_executor(), call)
