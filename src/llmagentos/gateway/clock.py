"""An injectable monotonic clock, so the gateway's blocks can be tested without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "monotonic"]

#: A clock is any callable returning seconds on a monotonic scale.
Clock = Callable[[], float]


#: The real clock: ``time.monotonic`` itself (no wrapper: it is read on every request).
monotonic: Clock = time.monotonic


class ManualClock:
    """A clock that moves only when told to: ``clock.advance(2.5)``."""

    def __init__(self, start: float = 1000.0) -> None:
        # Not zero: code that treats 0.0 as "never" must not be fooled by a fresh clock.
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self.now += seconds
