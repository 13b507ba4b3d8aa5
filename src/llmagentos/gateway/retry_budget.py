"""A retry budget, and which calls may be retried at all.

Retrying every failed call turns a struggling upstream into an overloaded one: each
retry is more load exactly when there is least capacity. A budget (Finagle's
``RetryBudget``, Envoy's ``retry_budget``) caps retries as a share of real traffic:
over the last ``window_seconds``, retries stay at most ``ratio`` times the requests,
plus a small floor (``min_per_second``) so a quiet service can still retry now and then.
With the default ratio of 0.2, retries add at most 20% extra upstream requests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from llmagentos.exceptions import ConfigError
from llmagentos.gateway.clock import Clock, monotonic

__all__ = ["IDEMPOTENT_METHODS", "RetryBudget", "is_idempotent"]

#: Methods whose repeat has the same effect as one call (RFC 9110, section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})

_SLOTS = 10  # the window slides in tenths: cheap, and at most a tenth too generous in age


class RetryBudget:
    """Allow a retry only while retries stay within ``ratio`` of recent requests.

    Call :meth:`record_request` once per original request (not per retry) and
    :meth:`can_retry` before each retry; ``can_retry`` spends the retry when it says yes.
    Over any window the retries allowed are at most
    ``ratio * requests + min_per_second * window_seconds``.
    """

    def __init__(
        self,
        ratio: float = 0.2,
        *,
        min_per_second: float = 1.0,
        window_seconds: float = 10.0,
        clock: Clock = monotonic,
    ) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError("ratio", f"must be in [0, 1], got {ratio}")
        if min_per_second < 0:
            raise ConfigError("min_per_second", f"must be >= 0, got {min_per_second}")
        if window_seconds <= 0:
            raise ConfigError("window_seconds", f"must be positive, got {window_seconds}")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window_seconds = window_seconds
        self._slot_seconds = window_seconds / _SLOTS
        self._clock = clock
        self._lock = threading.Lock()
        # slot index -> [requests, retries]; only the last _SLOTS slots are kept
        self._slots: dict[int, list[int]] = {}
        self.rejected = 0

    def record_request(self) -> None:
        """Count one original request (it earns ``ratio`` of a retry)."""
        with self._lock:
            self._current()[0] += 1

    def can_retry(self) -> bool:
        """True, and the retry is spent, when the budget has room for one more retry."""
        with self._lock:
            slot = self._current()
            requests = sum(s[0] for s in self._slots.values())
            retries = sum(s[1] for s in self._slots.values())
            allowance = self.ratio * requests + self.min_per_second * self.window_seconds
            # Whole retries only: a retry is allowed when one more still fits the allowance.
            if retries + 1 <= allowance + 1e-9:
                slot[1] += 1
                return True
            self.rejected += 1
            return False

    def snapshot(self) -> dict[str, float | int]:
        """Requests, retries and rejected retries in the window, for metrics."""
        with self._lock:
            self._current()
            return {
                "requests": sum(s[0] for s in self._slots.values()),
                "retries": sum(s[1] for s in self._slots.values()),
                "rejected": self.rejected,
            }

    def _current(self) -> list[int]:
        index = int(self._clock() // self._slot_seconds)
        if index not in self._slots:
            for old in [i for i in self._slots if i <= index - _SLOTS]:
                del self._slots[old]
            self._slots[index] = [0, 0]
        return self._slots[index]


def is_idempotent(
    method: str,
    *,
    route_idempotent: bool = False,
    headers: Mapping[str, str] | None = None,
) -> bool:
    """May this call be sent twice? Only then may the gateway retry it.

    GET, HEAD, PUT, DELETE, OPTIONS (and TRACE) are idempotent by definition; POST and
    PATCH only when the route is marked idempotent or the request carries a non-empty
    ``Idempotency-Key`` (the upstream then deduplicates repeats).
    """
    if method.upper() in IDEMPOTENT_METHODS or route_idempotent:
        return True
    if not headers:
        return False
    value = headers.get("idempotency-key")
    if value is None:  # a plain dict is case-sensitive; HTTP header names are not
        value = next((v for k, v in headers.items() if k.lower() == "idempotency-key"), None)
    return bool(value and value.strip())
