"""Per-service state the gateway keeps while routing: replicas, breaker, retry budget.

The registry says which replicas a service has; this keeps what the gateway has
learned about them (outstanding calls, ejections) and the service's circuit breaker
and retry budget, and follows the registry as replicas come and go.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from llmagentos.gateway.affinity import SessionAffinity
from llmagentos.gateway.balancer import LeastOutstanding, OutlierDetector, Replica, RoundRobin
from llmagentos.gateway.breaker import CircuitBreaker
from llmagentos.gateway.registry import ServiceEntry
from llmagentos.gateway.retry_budget import RetryBudget

__all__ = ["ResilienceSettings", "ServiceRuntime"]


@dataclass(frozen=True, slots=True)
class ResilienceSettings:
    """The gateway's defaults for every service (``[gateway]`` in its config)."""

    balancing: str = "least_outstanding"  # or "round_robin", "session"
    retry_ratio: float = 0.2
    retry_floor_per_second: float = 1.0
    breaker_failures: int = 5
    breaker_open_seconds: float = 30.0
    eject_after_failures: int = 5
    health_interval: float = 5.0  # seconds between active checks of /readyz; 0: none


@dataclass(slots=True)
class ServiceRuntime:
    """One service's live routing state.

    Args:
        settings: the gateway's defaults.
        balancing: this service's own balancing, if it sets one.
    """

    settings: ResilienceSettings
    balancing: str | None = None
    breaker: CircuitBreaker = field(init=False)
    budget: RetryBudget = field(init=False)
    picker: RoundRobin | LeastOutstanding = field(init=False)
    affinity: SessionAffinity | None = field(init=False)
    outliers: OutlierDetector = field(init=False)
    replicas: dict[str, Replica] = field(default_factory=dict)
    _pool_urls: tuple[str, ...] = field(init=False, default=())
    _pool: tuple[Replica, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        settings = self.settings
        self.breaker = CircuitBreaker(
            failure_threshold=settings.breaker_failures, open_seconds=settings.breaker_open_seconds
        )
        self.budget = RetryBudget(
            settings.retry_ratio, min_per_second=settings.retry_floor_per_second
        )
        balancing = self.balancing or settings.balancing
        self.picker = RoundRobin() if balancing == "round_robin" else LeastOutstanding()
        # Calls that name no session are spread by least-outstanding.
        self.affinity = SessionAffinity() if balancing == "session" else None
        self.outliers = OutlierDetector(consecutive_failures=settings.eject_after_failures)

    def pool(self, entry: ServiceEntry) -> tuple[Replica, ...]:
        """The service's replicas, following the registry (new ones added, gone ones dropped)."""
        urls = tuple(entry.replicas)
        if urls == self._pool_urls:  # nearly always: made once per change, not per request
            return self._pool
        current = set(urls)
        for url in list(self.replicas):
            if url not in current:
                del self.replicas[url]
        for url in urls:
            if url not in self.replicas:
                self.replicas[url] = Replica(url)
        self._pool_urls, self._pool = urls, tuple(self.replicas[url] for url in urls)
        return self._pool

    def pick(
        self, entry: ServiceEntry, exclude: set[str], session: str | None = None
    ) -> Replica | None:
        """A replica not in ``exclude``: the session's own with affinity, else balanced."""
        pool = self.pool(entry)
        candidates = [r for r in pool if r.url not in exclude] if exclude else pool
        if self.affinity is not None and session is not None:
            choice = self.affinity.pick(candidates, session)
        else:
            choice = self.picker.pick(candidates)
        if choice is None and candidates:
            # Every candidate is ejected or unhealthy: try one anyway rather than fail
            # a request the gateway might still serve (ejection is a hint, not a ban);
            # a session keeps to its own replica.
            if self.affinity is not None and session is not None:
                return self.affinity.pick(candidates, session, available_only=False)
            now = time.monotonic()
            choice = min(candidates, key=lambda r: (r.ejected_until > now, r.outstanding))
        return choice

    def record(self, replica: Replica, success: bool, entry: ServiceEntry) -> None:
        self.outliers.record(replica, success, self.pool(entry))
