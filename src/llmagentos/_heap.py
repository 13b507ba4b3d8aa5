"""A long-running server's start-up objects, kept out of the garbage collector's way."""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]


def freeze_startup_heap() -> None:
    """Collect once, then freeze everything alive (:func:`gc.freeze`).

    A server keeps what it loaded at start (modules, the app, its tables) for its
    whole life, yet every full collection walks all of it: on the gateway under load
    (32 connections) a full collection took 30 ms, 17 times in 15 s, and those pauses
    were its p99. Frozen objects are never walked again (nor freed: they stay alive
    anyway); what the server allocates afterwards is collected as before.
    """
    gc.collect()
    gc.freeze()
