"""The gateway's Prometheus metrics: per route and upstream, replicas, breakers, and the
counters its building blocks keep themselves (credential checks, access-log drops)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from llmagentos.exceptions import MissingExtraError
from llmagentos.gateway.access_log import dropped_lines
from llmagentos.gateway.guard import CredentialGuard
from llmagentos.gateway.loop_metrics import LoopCounter, LoopHistogram, TimeCells
from llmagentos.load_shedding import Shedding

if TYPE_CHECKING:
    from llmagentos.gateway.runtime import ServiceRuntime

__all__ = ["GatewayMetrics"]


class _Counted:
    """Counters kept outside prometheus_client, read at scrape time."""

    def __init__(
        self, guard: Callable[[], CredentialGuard | None], shedding: Shedding | None
    ) -> None:
        self.guard = guard
        self.shedding = shedding

    def _shedding(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        if self.shedding is None:
            return
        stats = self.shedding.stats()
        rows = [("(gateway)", stats), *stats["services"].items()]
        for name, kind, text in (
            ("in_flight", GaugeMetricFamily, "Requests being handled now"),
            ("waiting", GaugeMetricFamily, "Requests waiting for a slot now"),
            ("shed", CounterMetricFamily, "Requests answered 503 at once: past the limits"),
        ):
            family = kind(f"llmagentos_gateway_{name}", text, labels=["service"])
            for service, row in rows:
                family.add_metric([service], row[name] if service != "(gateway)" else stats[name])
            yield family
        slow = CounterMetricFamily(
            "llmagentos_gateway_body_timeouts",
            "Requests answered 408: their body did not arrive within body_timeout",
        )
        slow.add_metric([], stats["body_timeouts"])
        yield slow
        unread = GaugeMetricFamily(
            "llmagentos_gateway_unread",
            "Requests left unread in their sockets now, past the free slots",
        )
        unread.add_metric([], stats["unread"])
        yield unread

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield from self._shedding()
        dropped = CounterMetricFamily(
            "llmagentos_gateway_access_log_dropped",
            "Access-log lines dropped because the log's buffer was full",
        )
        dropped.add_metric([], dropped_lines())
        yield dropped
        guard = self.guard()
        if guard is None:
            return
        checks = CounterMetricFamily(
            "llmagentos_gateway_credential_checks",
            "Credential checks by outcome: cached (a hash), costly (scrypt or a signature), "
            "remembered (a recent failure, no work), throttled (429)",
            labels=["outcome"],
        )
        for outcome, count in guard.counts.items():
            checks.add_metric([outcome], count)
        yield checks
        failures = GaugeMetricFamily(
            "llmagentos_gateway_failed_credentials_remembered", "Failed credentials remembered now"
        )
        failures.add_metric([], guard.failures_remembered())
        yield failures


class GatewayMetrics:
    """One gateway's metrics, in a registry of its own (``registry``).

    Raises:
        MissingExtraError: prometheus-client is not installed (extra ``gateway``).
    """

    def __init__(
        self, guard: Callable[[], CredentialGuard | None], shedding: Shedding | None = None
    ) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge
        except ImportError as err:
            raise MissingExtraError("the gateway", "gateway", "prometheus-client") from err
        self.registry = registry = CollectorRegistry()
        # The per-request series: updated on the event loop only, so kept without locks.
        self.requests_total = LoopCounter(
            "llmagentos_gateway_requests", "Proxied requests",
            ["service", "route", "upstream", "status"],
        )  # fmt: skip
        self.upstream_latency = LoopHistogram(
            "llmagentos_gateway_upstream_seconds", "Time of each attempt at a replica",
            ["service", "upstream"],
        )  # fmt: skip
        self.latency = LoopHistogram(
            "llmagentos_gateway_request_seconds", "Proxied request time, end to end",
            ["service", "route"],
        )  # fmt: skip
        for series in (self.requests_total, self.upstream_latency, self.latency):
            registry.register(series)
        self.replica_healthy = Gauge(
            "llmagentos_gateway_replica_healthy", "1 when a replica passes its checks and is "
            "not ejected", ["service", "replica"], registry=registry,
        )  # fmt: skip
        self.breaker_open = Gauge(
            "llmagentos_gateway_breaker_open", "1 while a service's circuit breaker is not closed",
            ["service"], registry=registry,
        )  # fmt: skip
        self.rate_limit_errors = Counter(
            "llmagentos_gateway_rate_limit_store_errors",
            "Rate-limit decisions the store failed to give (answered as rate_limit_failure)",
            registry=registry,
        )  # fmt: skip
        registry.register(_Counted(guard, shedding))

        # Series by their labels, the status an int: no ``str()`` per request. The label
        # sets are bounded already.
        self._counted: dict[tuple[str, str, str, int], list[float]] = {}
        self._timed: dict[tuple[str, str], TimeCells] = {}
        self._hops: dict[tuple[str, str], TimeCells] = {}

    def observe(self, labels: tuple[str, str], upstream: str, status: int, seconds: float) -> None:
        """Count a request by (service, route), upstream and status, and time it."""
        key = (labels[0], labels[1], upstream, status)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.requests_total.cell(*labels, upstream, str(status))
        counter[0] += 1
        timer = self._timed.get(labels)
        if timer is None:
            timer = self._timed[labels] = self.latency.series(*labels)
        timer.observe(seconds)

    def observe_hop(self, service: str, upstream: str, seconds: float) -> None:
        """Time one attempt at a replica."""
        key = (service, upstream)
        timer = self._hops.get(key)
        if timer is None:
            timer = self._hops[key] = self.upstream_latency.series(service, upstream)
        timer.observe(seconds)

    def forget(self, service: str) -> None:
        """Drop the cached children of a service that is gone (its series stay)."""
        caches: tuple[dict[Any, Any], ...] = (self._counted, self._timed, self._hops)
        for cache in caches:
            for key in [k for k in cache if k[0] == service]:
                del cache[key]

    def follow(self, runtimes: Mapping[str, ServiceRuntime]) -> None:
        """Set the breaker and replica gauges from the services' live state."""
        now = time.monotonic()
        for name, runtime in runtimes.items():
            self.breaker_open.labels(name).set(runtime.breaker.state.value != "closed")
            for url, replica in runtime.replicas.items():
                self.replica_healthy.labels(name, url).set(replica.available(now))
