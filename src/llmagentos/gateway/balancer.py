"""Replicas, load balancing, outlier ejection and active health checks.

* :class:`Replica` is one upstream instance: its URL, calls in flight, health, and
  when an ejection ends.
* :class:`RoundRobin` and :class:`LeastOutstanding` pick among the replicas that are
  healthy and not ejected.
* :class:`OutlierDetector` (passive checks, like Envoy's outlier detection) ejects a
  replica after consecutive failures, for an exponentially growing time, but never
  more than a share of the pool, so a service cannot lose every replica to ejection.
* :class:`HealthChecker` (active checks) polls each replica's ``/readyz`` and flips
  its ``healthy`` flag after a few results in a row, so one blip does not flap it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import httpx

from llmagentos.exceptions import ConfigError
from llmagentos.gateway.clock import Clock, monotonic

__all__ = [
    "BALANCING",
    "HealthChecker",
    "LeastOutstanding",
    "OutlierDetector",
    "Replica",
    "RoundRobin",
]

#: The balancing a service can use ("session": see :mod:`.affinity`).
BALANCING = ("least_outstanding", "round_robin", "session")


@dataclass(slots=True, eq=False)
class Replica:
    """One instance of a service, and what the gateway knows about it."""

    url: str
    outstanding: int = 0
    healthy: bool = True  # optimistic: route to a new replica before its first check
    ejected_until: float = 0.0
    ejections: int = 0
    consecutive_failures: int = 0
    calls: int = 0  # calls begun, ever (the admin view shows them)
    _last_ejection_end: float = field(default=0.0, repr=False)

    def available(self, now: float) -> bool:
        """Healthy and not ejected at ``now``."""
        return self.healthy and now >= self.ejected_until

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until

    def begin(self) -> None:
        """A call to this replica started (least-outstanding counts these)."""
        self.outstanding += 1
        self.calls += 1

    def end(self) -> None:
        self.outstanding = max(0, self.outstanding - 1)


class RoundRobin:
    """Each available replica in turn."""

    def __init__(self, *, clock: Clock = monotonic) -> None:
        self._clock = clock
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, replicas: Sequence[Replica]) -> Replica | None:
        """The next available replica, or ``None`` when none is available."""
        now = self._clock()
        with self._lock:
            n = len(replicas)
            for i in range(n):
                replica = replicas[(self._next + i) % n]
                if replica.available(now):
                    self._next = (self._next + i + 1) % n
                    return replica
            return None


class LeastOutstanding:
    """The available replica with the fewest calls in flight; ties go round-robin.

    A full scan: pools are small, and the scan is exact where power-of-two-choices
    would only be likely to be right.
    """

    def __init__(self, *, clock: Clock = monotonic) -> None:
        self._clock = clock
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, replicas: Sequence[Replica]) -> Replica | None:
        now = self._clock()
        with self._lock:
            n = len(replicas)
            best: int | None = None
            # Start the scan at the rotating cursor and keep the first minimum, so equal
            # replicas take turns instead of the first one taking every call.
            for i in range(n):
                index = (self._next + i) % n
                replica = replicas[index]
                if replica.available(now) and (
                    best is None or replica.outstanding < replicas[best].outstanding
                ):
                    best = index
            if best is None:
                return None
            self._next = (best + 1) % n
            return replicas[best]


class OutlierDetector:
    """Eject replicas that fail several calls in a row.

    Args:
        consecutive_failures: failures (5xx, refused, timed out) in a row that eject.
        base_ejection_seconds: the first ejection's length; each further ejection of the
            same replica doubles it, up to ``max_ejection_seconds``.
        max_ejected_fraction: at most this share of a pool is ejected at once (rounded
            down, so a pool of one is never ejected).
        clock: monotonic seconds.

    A replica that stays out of trouble for ``max_ejection_seconds`` after its last
    ejection starts again from the base time.
    """

    def __init__(
        self,
        *,
        consecutive_failures: int = 5,
        base_ejection_seconds: float = 30.0,
        max_ejection_seconds: float = 300.0,
        max_ejected_fraction: float = 0.5,
        clock: Clock = monotonic,
    ) -> None:
        if consecutive_failures < 1:
            raise ConfigError("consecutive_failures", f"must be >= 1, got {consecutive_failures}")
        if not 0 < base_ejection_seconds <= max_ejection_seconds:
            raise ConfigError(
                "base_ejection_seconds",
                f"need 0 < base ({base_ejection_seconds}) <= max ({max_ejection_seconds})",
            )
        if not 0.0 <= max_ejected_fraction <= 1.0:
            raise ConfigError(
                "max_ejected_fraction", f"must be in [0, 1], got {max_ejected_fraction}"
            )
        self.consecutive_failures = consecutive_failures
        self.base_ejection_seconds = base_ejection_seconds
        self.max_ejection_seconds = max_ejection_seconds
        self.max_ejected_fraction = max_ejected_fraction
        self._clock = clock
        self._lock = threading.Lock()

    def record(self, replica: Replica, success: bool, pool: Sequence[Replica]) -> bool:
        """Count one call's outcome on ``replica`` (a member of ``pool``).

        Returns True when this outcome ejected the replica.
        """
        now = self._clock()
        with self._lock:
            if success:
                replica.consecutive_failures = 0
                if (
                    replica.ejections
                    and not replica.ejected(now)
                    and now - replica._last_ejection_end >= self.max_ejection_seconds
                ):
                    replica.ejections = 0
                return False
            replica.consecutive_failures += 1
            if replica.ejected(now) or replica.consecutive_failures < self.consecutive_failures:
                return False
            ejected = sum(1 for r in pool if r is not replica and r.ejected(now))
            if ejected + 1 > math.floor(self.max_ejected_fraction * len(pool)):
                return False  # keep it: losing more of the pool would hurt more than it
            seconds = min(
                self.base_ejection_seconds * 2.0**replica.ejections, self.max_ejection_seconds
            )
            replica.ejections += 1
            replica.ejected_until = now + seconds
            replica._last_ejection_end = replica.ejected_until
            replica.consecutive_failures = 0
            return True


Replicas = Iterable[Replica] | Callable[[], Iterable[Replica]]


class HealthChecker:
    """Poll ``GET {url}{path}`` on every replica every ``interval`` seconds.

    A replica turns unhealthy after ``unhealthy_threshold`` failed checks in a row (an
    answer other than 2xx, a refused connection, or no answer within ``timeout``) and
    healthy again after ``healthy_threshold`` passed checks in a row.

    ``replicas`` is a collection, or a callable returning the current one (so replicas
    registered at run time are checked too). Use :meth:`check_once` directly, or
    :meth:`start` a background task and :meth:`stop` it.
    """

    def __init__(
        self,
        replicas: Replicas,
        *,
        path: str = "/readyz",
        interval: float = 5.0,
        timeout: float = 1.0,
        healthy_threshold: int = 2,
        unhealthy_threshold: int = 3,
        client: httpx.AsyncClient | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ConfigError("interval", "interval and timeout must be positive")
        if healthy_threshold < 1 or unhealthy_threshold < 1:
            raise ConfigError("healthy_threshold", "thresholds must be at least 1")
        self._replicas = replicas
        self.path = path if path.startswith("/") else "/" + path
        self.interval = interval
        self.timeout = timeout
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self._own_client = client is None
        # Health checks must not wait behind a connection pool busy with real traffic.
        self._verify = verify
        self._client = client or self._new_client()
        self._streaks: dict[str, int] = {}  # url -> +passes in a row or -failures in a row
        self._task: asyncio.Task[None] | None = None
        self.checks = 0

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, trust_env=False, verify=self._verify)

    def _current(self) -> list[Replica]:
        source = self._replicas
        return list(source() if callable(source) else source)

    async def check_once(self) -> None:
        """Check every replica once, concurrently, and update their ``healthy`` flags."""
        if self._own_client and self._client.is_closed:  # started again after stop()
            self._client = self._new_client()
        replicas = self._current()
        results = await asyncio.gather(*(self._probe(r.url) for r in replicas))
        for replica, passed in zip(replicas, results, strict=True):
            self._apply(replica, passed)
        live = {r.url for r in replicas}
        for url in [u for u in self._streaks if u not in live]:
            del self._streaks[url]  # forget deregistered replicas
        self.checks += 1

    async def _probe(self, url: str) -> bool:
        try:
            response = await self._client.get(url + self.path, timeout=self.timeout)
        except Exception:
            # Any way of not answering (refused, timed out, even a URL httpx chokes on)
            # is a failed check; the loop must never die on one replica.
            return False
        return 200 <= response.status_code < 300

    def _apply(self, replica: Replica, passed: bool) -> None:
        streak = self._streaks.get(replica.url, 0)
        if passed:
            streak = streak + 1 if streak > 0 else 1
            if not replica.healthy and streak >= self.healthy_threshold:
                replica.healthy = True
        else:
            streak = streak - 1 if streak < 0 else -1
            if replica.healthy and -streak >= self.unhealthy_threshold:
                replica.healthy = False
        self._streaks[replica.url] = streak

    def start(self) -> None:
        """Run :meth:`check_once` every ``interval`` seconds in a background task."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="llmagentos-health-checks"
            )

    async def _loop(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Stop the background task and close the HTTP client this checker made."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_client:
            await self._client.aclose()
