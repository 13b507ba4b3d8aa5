"""A circuit breaker: stop calling an upstream that keeps failing, then probe it.

The classic pattern (Nygard, *Release It!*): **closed** passes calls and counts
failures; after ``failure_threshold`` failures in a row, or a failure rate of at least
``failure_rate`` over the last ``window`` calls, it **opens** and rejects calls at once
for ``open_seconds``; then it goes **half-open** and lets ``half_open_trials`` trial
calls through. If they all succeed it closes; any trial failure opens it again.

Callers take a :class:`Permit` before a call and report its outcome on it. A permit
remembers the breaker's generation, so an outcome that arrives after the state moved
on (a slow call started while closed, finishing after the breaker opened) is ignored
instead of closing or re-opening the breaker by mistake.

Several gateway workers share one breaker per service through Redis
(:mod:`.shared_breakers`): each keeps this state machine, tells a
:class:`BreakerListener` what it saw, and :meth:`CircuitBreaker.adopt` takes a state
another worker decided.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from llmagentos.exceptions import ConfigError
from llmagentos.gateway.clock import Clock, monotonic

__all__ = ["BreakerListener", "BreakerState", "CircuitBreaker", "Permit"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerListener(Protocol):
    """Told, under the breaker's lock (so: quick, no locks of its own), what it saw."""

    def outcome(self, success: bool) -> None:
        """A call finished while the breaker was closed."""

    def moved(self, state: BreakerState) -> None:
        """The breaker moved to ``state`` by its own rules (never by :meth:`adopt`)."""


@dataclass(slots=True)
class _Counters:
    allowed: int = 0
    rejected: int = 0
    successes: int = 0
    failures: int = 0
    opened: int = 0


class Permit:
    """Leave to make one call; report ``success()``, ``failure()`` or ``release()``."""

    __slots__ = ("_breaker", "_done", "_generation", "_trial")

    def __init__(self, breaker: CircuitBreaker, generation: int, trial: bool) -> None:
        self._breaker, self._generation, self._trial = breaker, generation, trial
        self._done = False

    @property
    def trial(self) -> bool:
        """True for a half-open trial call."""
        return self._trial

    def success(self) -> None:
        self._finish(True)

    def failure(self) -> None:
        self._finish(False)

    def record(self, success: bool) -> None:
        self._finish(success)

    def release(self) -> None:
        """The call never reached the upstream (cancelled): count nothing, free the slot."""
        self._finish(None)

    def _finish(self, outcome: bool | None) -> None:
        if self._done:  # a permit counts once, whatever the caller does twice
            return
        self._done = True
        self._breaker._finish(self._generation, self._trial, outcome)


class CircuitBreaker:
    """Closed / open / half-open breaker for one upstream.

    Args:
        failure_threshold: consecutive failures that open the breaker.
        failure_rate: open also when this share of the last ``window`` calls failed
            (once at least ``min_calls`` were seen); ``None`` turns the rule off.
        window: how many recent calls the failure rate looks at.
        min_calls: calls needed in the window before the rate rule applies.
        open_seconds: how long it rejects calls before trying again.
        half_open_trials: trial calls let through, and successes needed to close.
        clock: monotonic seconds (inject one in tests).
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        failure_rate: float | None = None,
        window: int = 20,
        min_calls: int = 10,
        open_seconds: float = 30.0,
        half_open_trials: int = 1,
        clock: Clock = monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ConfigError("failure_threshold", f"must be at least 1, got {failure_threshold}")
        if failure_rate is not None and not 0.0 < failure_rate <= 1.0:
            raise ConfigError("failure_rate", f"must be in (0, 1], got {failure_rate}")
        if window < 1 or not 1 <= min_calls <= window:
            raise ConfigError("min_calls", f"need 1 <= min_calls <= window, got {min_calls}")
        if open_seconds <= 0:
            raise ConfigError("open_seconds", f"must be positive, got {open_seconds}")
        if half_open_trials < 1:
            raise ConfigError("half_open_trials", f"must be at least 1, got {half_open_trials}")
        self.failure_threshold = failure_threshold
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.open_seconds = open_seconds
        self.half_open_trials = half_open_trials
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._recent: deque[bool] = deque(maxlen=window)  # True = failure
        self._recent_failures = 0  # sum(self._recent), kept as it changes
        self._streak = 0
        self._opened_at = 0.0
        self._trials_started = 0
        self._trial_successes = 0
        self.counters = _Counters()
        self.listener: BreakerListener | None = None

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose time is up reads as half-open)."""
        with self._lock:
            self._tick()
            return self._state

    def acquire(self) -> Permit | None:
        """A permit for one call, or ``None``: reject the call now (answer 503)."""
        with self._lock:
            if self._state is BreakerState.OPEN:
                self._tick()
            if self._state is BreakerState.OPEN:
                self.counters.rejected += 1
                return None
            trial = self._state is BreakerState.HALF_OPEN
            if trial:
                if self._trials_started >= self.half_open_trials:
                    self.counters.rejected += 1
                    return None
                self._trials_started += 1
            self.counters.allowed += 1
            return Permit(self, self._generation, trial)

    def retry_after(self) -> float:
        """Seconds until the breaker lets a trial through (0 unless open): for Retry-After."""
        with self._lock:
            self._tick()
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.open_seconds - self._clock())

    def snapshot(self) -> dict[str, float | int | str]:
        """State and counters, for metrics and the admin API."""
        with self._lock:
            self._tick()
            c = self.counters
            return {
                "state": self._state.value,
                "allowed": c.allowed,
                "rejected": c.rejected,
                "successes": c.successes,
                "failures": c.failures,
                "opened": c.opened,
                "consecutive_failures": self._streak,
            }

    def adopt(self, state: BreakerState, *, open_for: float = 0.0) -> None:
        """Take ``state`` decided elsewhere (another worker), open for ``open_for`` more
        seconds; calls admitted before count no more, and the listener is not told."""
        with self._lock:
            self._move(state, tell=False)
            if state is BreakerState.OPEN:
                left = min(max(open_for, 0.0), self.open_seconds)
                self._opened_at = self._clock() - self.open_seconds + left
                self._tick()

    # -- internals (called with the lock held, except _finish) --

    def _tick(self) -> None:
        if (
            self._state is BreakerState.OPEN
            and self._clock() >= self._opened_at + self.open_seconds
        ):
            self._move(BreakerState.HALF_OPEN)

    def _move(self, state: BreakerState, *, tell: bool = True) -> None:
        self._state = state
        self._generation += 1  # outcomes of calls admitted before this are now stale
        self._trials_started = self._trial_successes = 0
        if state is BreakerState.OPEN:
            self._opened_at = self._clock()
            self.counters.opened += 1
        elif state is BreakerState.CLOSED:
            self._recent.clear()
            self._recent_failures = 0
            self._streak = 0
        if tell and self.listener is not None:
            self.listener.moved(state)

    def _finish(self, generation: int, trial: bool, outcome: bool | None) -> None:
        with self._lock:
            if outcome is not None:
                if outcome:
                    self.counters.successes += 1
                else:
                    self.counters.failures += 1
            if self._state is BreakerState.OPEN:
                self._tick()  # only an open breaker's time runs out
            if generation != self._generation:
                return
            if trial:
                self._finish_trial(outcome)
            elif outcome is not None and self._state is BreakerState.CLOSED:
                self._finish_closed(outcome)

    def _finish_trial(self, outcome: bool | None) -> None:
        if outcome is None:
            self._trials_started -= 1  # the trial never ran: let another one through
        elif not outcome:
            self._move(BreakerState.OPEN)
        else:
            self._trial_successes += 1
            if self._trial_successes >= self.half_open_trials:
                self._move(BreakerState.CLOSED)

    def _finish_closed(self, success: bool) -> None:
        if self.listener is not None:
            self.listener.outcome(success)
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0]:
            self._recent_failures -= 1  # the oldest outcome, a failure, drops out
        recent.append(not success)
        if not success:
            self._recent_failures += 1
        self._streak = 0 if success else self._streak + 1
        if self._streak >= self.failure_threshold:
            self._move(BreakerState.OPEN)
            return
        if self.failure_rate is not None and len(self._recent) >= self.min_calls:
            rate = self._recent_failures / len(self._recent)
            if rate >= self.failure_rate:
                self._move(BreakerState.OPEN)
