"""What the dashboard shows of an API gateway: its health, its services and their traffic.

:class:`GatewayWatcher` polls one gateway's own routes, all four at once and each
within ``timeout``:

- ``/healthz`` and ``/readyz`` (open to anyone; ``/readyz`` also names the services);
- ``/metrics`` (Prometheus text, open to anyone): request counts by service and status,
  the end-to-end latency histogram, attempts per replica, breakers;
- ``/gateway/services`` (an admin route): the registry with each service's breaker and
  replicas. A gateway with a key store opens it only to an admin key, sent as
  ``Authorization: Bearer <key>`` (``llmagentos keys create --admin``); one without a
  key store answers it to loopback clients only.

A gateway that is down, slow, refuses the admin key or answers something else gives a
:class:`GatewayView` whose ``problem`` says so in words, never an exception: what could
still be read (health, metrics) is shown beside it.

Counts are the gateway's totals since it started. Rates, error rates and latency
quantiles are over the *window*: the time between this fetch's scrape of ``/metrics``
and the previous one's (the watcher keeps that previous sample). On the first fetch
there is no window: ``requests_per_second`` is ``None`` and the error rate and
quantiles are over the gateway's lifetime. A counter that went down (the gateway
restarted) counts from zero, as Prometheus's ``rate()`` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from llmagentos.exceptions import ConfigError

__all__ = ["GatewayView", "GatewayWatcher", "ReplicaView", "ServiceView"]

_REQUESTS = "llmagentos_gateway_requests"
_LATENCY = "llmagentos_gateway_request_seconds"
_ATTEMPTS = "llmagentos_gateway_upstream_seconds"
_BREAKER = "llmagentos_gateway_breaker_open"
_PREFIX = "llmagentos_gateway_"
# Labels the gateway gives its own routes and refusals: never a service of the registry.
_OWN_LABELS = frozenset({"gateway", "v1", "(unknown)", "(refused)"})
_MAX_BODY = 8 * 1024 * 1024  # a /metrics this large is not a gateway's
_MAX_DETAIL = 200


@dataclass
class ReplicaView:
    """One replica of a service, as the gateway's admin route describes it.

    Attributes:
        url: the replica's base URL.
        available: healthy and not ejected now (the balancer may pick it).
        healthy: passes the gateway's active health checks.
        in_flight: requests the gateway has at this replica now.
        failures_in_a_row: consecutive failed attempts (ejection counts these).
        ejected_for_seconds: how much longer it is ejected (0: not ejected).
        attempts: attempts the gateway made at it since it started (retries included).
        known: ``False`` for a replica the gateway has not routed to or checked yet
            (its state is then the state of a fresh replica).
    """

    url: str
    available: bool
    healthy: bool
    in_flight: int
    failures_in_a_row: int
    ejected_for_seconds: float
    attempts: float = 0.0
    known: bool = True


@dataclass
class ServiceView:
    """One service: its breaker, replicas and traffic.

    Attributes:
        name: the service's name (its path prefix at the gateway).
        breaker: ``"closed"``, ``"open"`` or ``"half_open"``. Without the admin route
            it comes from the ``breaker_open`` gauge, where half-open reads ``"open"``.
        replicas: its replicas (empty without the admin route).
        requests: requests answered since the gateway started.
        errors: of those, answered 5xx.
        client_errors: of those, answered 4xx.
        requests_per_second: over the window; ``None`` on the first fetch.
        error_rate: the fraction answered 5xx over the window (the lifetime on the first
            fetch); ``None`` without requests in it.
        p50_ms, p99_ms: end-to-end latency quantiles over the window (the lifetime on
            the first fetch), interpolated in the gateway's histogram buckets; ``None``
            without requests in it.
        routes: the route templates the gateway labels its metrics with.
        balancing: the service's balancing policy (``None``: the gateway's default).
        timeout: its timeout in seconds, if the admin route told.
        route_timeouts: timeouts of single routes.
        idempotent_routes: routes retried even when not idempotent by method.
    """

    name: str
    breaker: str
    replicas: list[ReplicaView]
    requests: float
    errors: float
    client_errors: float
    requests_per_second: float | None
    error_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    routes: list[str] = field(default_factory=list)
    balancing: str | None = None
    timeout: float | None = None
    route_timeouts: dict[str, float] = field(default_factory=dict)
    idempotent_routes: list[str] = field(default_factory=list)


@dataclass
class GatewayView:
    """One fetch of a gateway.

    Attributes:
        url: the gateway's base URL.
        reachable: it answered in HTTP at all.
        healthy: ``/healthz`` answered 200 (``None``: it did not answer).
        ready: ``/readyz`` answered 200 (``None``: it did not answer).
        services: its services, by name.
        problem: what went wrong, in words (``None``: nothing).
        fetched_at: when, in seconds since the epoch.
        admin: the admin route answered (so breakers and replicas are its own).
        window_seconds: the time between this scrape of ``/metrics`` and the previous
            one (``None`` on the first, or when ``/metrics`` could not be read).
    """

    url: str
    reachable: bool
    healthy: bool | None
    ready: bool | None
    services: list[ServiceView]
    problem: str | None
    fetched_at: float
    admin: bool = False
    window_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (nested views as dicts)."""
        return dataclasses.asdict(self)


# -- metrics ----------------------------------------------------------------------------


@dataclass
class _Totals:
    """One service's counters in one scrape."""

    requests: float = 0.0
    errors: float = 0.0
    client_errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count


@dataclass
class _Sample:
    """What one scrape of ``/metrics`` says, and when it was taken (monotonic)."""

    at: float
    services: dict[str, _Totals] = field(default_factory=dict)
    attempts: dict[tuple[str, str], float] = field(default_factory=dict)
    breaker_open: dict[str, bool] = field(default_factory=dict)
    gateway_families: int = 0


def _parse_metrics(text: str, at: float) -> _Sample:
    """The counters of a gateway's ``/metrics``.

    Raises:
        ValueError: ``text`` is not Prometheus text.
    """
    from prometheus_client.parser import text_string_to_metric_families

    sample = _Sample(at)
    for family in text_string_to_metric_families(text):
        if family.name.startswith(_PREFIX):
            sample.gateway_families += 1
        for s in family.samples:
            service = s.labels.get("service")
            if service is None or not math.isfinite(s.value):
                continue
            if s.name == f"{_REQUESTS}_total":
                totals = sample.services.setdefault(service, _Totals())
                totals.requests += s.value
                status = s.labels.get("status", "")
                if status.startswith("5"):
                    totals.errors += s.value
                elif status.startswith("4"):
                    totals.client_errors += s.value
            elif s.name == f"{_LATENCY}_bucket":
                bound = float(s.labels.get("le", "nan"))  # "+Inf" reads as inf
                if not math.isnan(bound):
                    buckets = sample.services.setdefault(service, _Totals()).buckets
                    buckets[bound] = buckets.get(bound, 0.0) + s.value  # summed over routes
            elif s.name == f"{_ATTEMPTS}_count":
                key = (service, s.labels.get("upstream", ""))
                sample.attempts[key] = sample.attempts.get(key, 0.0) + s.value
            elif s.name == _BREAKER:
                sample.breaker_open[service] = s.value >= 1
    return sample


def _increase(now: float, before: float | None) -> float:
    """How much a counter grew; a counter that went down restarted from zero."""
    if before is None:
        return now
    return now - before if now >= before else now


def _quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of cumulative ``buckets`` (le -> count), in seconds, as
    Prometheus's ``histogram_quantile`` interpolates it; ``None`` without observations."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):  # above the largest finite bucket: its bound is all we know
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return None


def _window_buckets(
    now: Mapping[float, float], before: Mapping[float, float] | None
) -> dict[float, float]:
    if before is None:
        return dict(now)
    return {bound: _increase(count, before.get(bound)) for bound, count in now.items()}


# -- the gateway's answers ----------------------------------------------------------------


@dataclass
class _Reply:
    status: int
    body: bytes
    at: float  # monotonic, when the body was read

    def json(self) -> Any:
        """The body as JSON.

        Raises:
            ValueError: it is not JSON.
        """
        return json.loads(self.body)

    def detail(self) -> str:
        """The gateway's own ``{"detail"}`` of a refusal, shortened; ``""`` without one."""
        try:
            data = self.json()
        except (ValueError, RecursionError):
            return ""
        detail = data.get("detail") if isinstance(data, dict) else None
        if not isinstance(detail, str):
            return ""
        detail = "".join(c if c.isprintable() else " " for c in detail)
        return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 3] + "..."


@dataclass
class _Failure:
    """No HTTP answer: why, in words."""

    reason: str


class _TooLarge(Exception):
    pass


def _check_url(url: str) -> str:
    if not isinstance(url, str):
        raise ConfigError("gateway", f"the gateway's URL must be a string (got {url!r})")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as err:
        raise ConfigError("gateway", f"{url!r} is not a URL ({err})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "gateway", f"the gateway's URL must be http(s)://host[:port] (got {url!r})"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError("gateway", "the gateway's URL must not carry credentials")
    if parts.query or parts.fragment:
        raise ConfigError("gateway", f"the gateway's URL takes no query or fragment ({url!r})")
    return url.strip().rstrip("/")


def _check_admin_key(key: str | None) -> str | None:
    if key is not None and (not key or any(not c.isprintable() or c.isspace() for c in key)):
        raise ConfigError("admin_key", "an admin key is one word of printable characters")
    return key


def _seconds(value: float) -> str:
    return f"{value:g} s"


class GatewayWatcher:
    """Polls one gateway; keeps the previous sample of counters so rates are per second
    between two polls.

    Args:
        url: the gateway's base URL (``http://127.0.0.1:8000``).
        admin_key: an admin key for ``/gateway/services`` (sent as ``Authorization:
            Bearer``, to that route only); ``None`` sends none (enough for a gateway
            without a key store, from loopback).
        timeout: seconds each fetch may take (its four requests run at once).
        client: an ``httpx.AsyncClient`` to use (for custom TLS or proxies); it stays
            open after :meth:`aclose`. By default the watcher makes its own, which
            ignores proxy settings from the environment.

    Raises:
        ConfigError: ``url`` is not an http(s) URL with a host (field ``gateway``), the
            admin key is not one word, or ``timeout`` is not a positive number.
    """

    def __init__(
        self,
        url: str,
        *,
        admin_key: str | None = None,
        timeout: float = 2.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = _check_url(url)
        self._admin_key = _check_admin_key(admin_key)
        if not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
            raise ConfigError("timeout", f"must be a positive number of seconds (got {timeout!r})")
        self.timeout = float(timeout)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, trust_env=False
        )
        self._previous: _Sample | None = None

    def __repr__(self) -> str:  # never the key
        return f"GatewayWatcher({self.url!r}, timeout={self.timeout:g})"

    async def aclose(self) -> None:
        """Close the HTTP client, if the watcher made it."""
        if self._own_client:
            await self._client.aclose()

    async def fetch(self) -> GatewayView:
        """Poll the gateway once (within about ``timeout``); never raises for a gateway
        that is down or answers wrongly: the view's ``problem`` says what went wrong."""
        admin_headers = (
            {} if self._admin_key is None else {"authorization": f"Bearer {self._admin_key}"}
        )
        health, ready, metrics, listing = await asyncio.gather(
            self._get("/healthz"),
            self._get("/readyz"),
            self._get("/metrics"),
            self._get("/gateway/services", admin_headers),
        )
        answers = {"/healthz": health, "/readyz": ready, "/metrics": metrics,
                   "/gateway/services": listing}  # fmt: skip
        if not any(isinstance(answer, _Reply) for answer in answers.values()):
            reasons = _unique(a.reason for a in answers.values() if isinstance(a, _Failure))
            return GatewayView(
                url=self.url, reachable=False, healthy=None, ready=None, services=[],
                problem="; ".join(reasons), fetched_at=time.time(),
            )  # fmt: skip
        problems = [
            f"{path}: {answer.reason}"
            for path, answer in answers.items()
            if isinstance(answer, _Failure)
        ]
        healthy = self._health(health, problems)
        is_ready, ready_names = self._readiness(ready, problems)
        sample = self._metrics(metrics, problems)
        entries = self._listing(listing, problems)
        previous = self._previous if sample is not None else None
        if sample is not None:
            self._previous = sample  # no await from reading the previous one to here
        names = _names(entries, ready_names, sample)
        by_name = {entry["name"]: entry for entry in entries or []}
        services = [_service(name, by_name.get(name), sample, previous) for name in names]
        window = None
        if sample is not None and previous is not None:
            window = max(sample.at - previous.at, 0.0)
        return GatewayView(
            url=self.url, reachable=True, healthy=healthy, ready=is_ready, services=services,
            problem="; ".join(_unique(problems)) or None, fetched_at=time.time(),
            admin=entries is not None, window_seconds=window,
        )  # fmt: skip

    # -- one request --------------------------------------------------------------------

    async def _get(self, path: str, headers: Mapping[str, str] | None = None) -> _Reply | _Failure:
        try:
            return await asyncio.wait_for(self._read(path, headers or {}), self.timeout)
        except (TimeoutError, httpx.TimeoutException):
            return _Failure(f"the gateway at {self.url} did not answer within "
                            f"{_seconds(self.timeout)}")  # fmt: skip
        except httpx.ConnectError as err:
            return _Failure(f"nothing answers at {self.url} ({_connect_reason(err)})")
        except (httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.DecodingError):
            return _Failure(f"{self.url} does not answer in HTTP")
        except _TooLarge:
            return _Failure(f"answered more than {_MAX_BODY} bytes")
        except (httpx.HTTPError, OSError) as err:
            return _Failure(f"could not ask {self.url} ({type(err).__name__}: {err})")

    async def _read(self, path: str, headers: Mapping[str, str]) -> _Reply:
        async with self._client.stream("GET", self.url + path, headers=headers) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_BODY:
                    raise _TooLarge
            return _Reply(response.status_code, bytes(body), time.monotonic())

    # -- reading each answer ------------------------------------------------------------

    @staticmethod
    def _health(answer: _Reply | _Failure, problems: list[str]) -> bool | None:
        if isinstance(answer, _Failure):
            return None
        if answer.status != 200:
            problems.append(f"/healthz answered {answer.status}: the gateway is not healthy")
            return False
        return True

    @staticmethod
    def _readiness(
        answer: _Reply | _Failure, problems: list[str]
    ) -> tuple[bool | None, list[str] | None]:
        if isinstance(answer, _Failure):
            return None, None
        if answer.status != 200:
            detail = answer.detail()
            problems.append(f"/readyz answered {answer.status}: the gateway is not ready"
                            + (f" ({detail})" if detail else ""))  # fmt: skip
            return False, None
        try:
            data = answer.json()
        except (ValueError, RecursionError):
            problems.append("/readyz answered something that is not JSON")
            return True, None
        names = data.get("services") if isinstance(data, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return True, None
        return True, list(names)

    def _metrics(self, answer: _Reply | _Failure, problems: list[str]) -> _Sample | None:
        if isinstance(answer, _Failure):
            return None
        if answer.status != 200:
            problems.append(f"/metrics answered {answer.status}")
            return None
        try:
            sample = _parse_metrics(answer.body.decode("utf-8"), answer.at)
        except (ValueError, IndexError, KeyError, TypeError) as err:  # the parser's errors
            problems.append(f"/metrics is not Prometheus text ({_short(err)})")
            return None
        if sample.gateway_families == 0:
            problems.append("/metrics has no llmagentos gateway metrics: is it a gateway?")
            return None
        return sample

    def _listing(
        self, answer: _Reply | _Failure, problems: list[str]
    ) -> list[dict[str, Any]] | None:
        if isinstance(answer, _Failure):
            return None
        if answer.status in (401, 403):
            detail = answer.detail()
            said = f": {detail}" if detail else ""
            if self._admin_key is None:
                problems.append(
                    f"the gateway refused the admin listing without an admin key "
                    f"({answer.status}){said}"
                )
            else:
                problems.append(f"the gateway refused the admin key ({answer.status}){said}")
            return None
        if answer.status != 200:
            detail = answer.detail()
            problems.append(f"/gateway/services answered {answer.status}"
                            + (f": {detail}" if detail else ""))  # fmt: skip
            return None
        try:
            data = answer.json()
        except (ValueError, RecursionError):
            problems.append("/gateway/services answered something that is not JSON")
            return None
        listed = data.get("services") if isinstance(data, dict) else None
        if not isinstance(listed, list) or not all(
            isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in listed
        ):
            problems.append('/gateway/services is not {"services": [{"name": ...}, ...]}')
            return None
        return listed


# -- building the views -----------------------------------------------------------------


def _names(
    entries: list[dict[str, Any]] | None, ready: list[str] | None, sample: _Sample | None
) -> list[str]:
    """The services: the admin listing's, else ``/readyz``'s, else those in the metrics."""
    if entries is not None:
        return [entry["name"] for entry in entries]
    if ready is not None:
        return ready
    return sorted(set(sample.services) - _OWN_LABELS) if sample is not None else []


def _service(
    name: str, entry: Mapping[str, Any] | None, sample: _Sample | None, previous: _Sample | None
) -> ServiceView:
    """One service's view from its registry entry (the admin listing) and the metrics."""
    totals = sample.services.get(name, _Totals()) if sample is not None else _Totals()
    before = previous.services.get(name, _Totals()) if previous is not None else None
    requests = _increase(totals.requests, before.requests if before else None)
    errors = _increase(totals.errors, before.errors if before else None)
    if before is not None and totals.requests < before.requests:  # restarted: from zero
        requests, errors = totals.requests, totals.errors
    rate = None
    if sample is not None and previous is not None and sample.at > previous.at:
        rate = requests / (sample.at - previous.at)
    buckets = _window_buckets(totals.buckets, before.buckets if before else None)
    p50, p99 = _quantile(0.5, buckets), _quantile(0.99, buckets)
    state = entry.get("state") if entry is not None else None
    state = state if isinstance(state, dict) else {}
    breaker = state.get("breaker")
    if not isinstance(breaker, str):
        is_open = sample is not None and sample.breaker_open.get(name, False)
        breaker = "open" if is_open else "closed"
    attempts = sample.attempts if sample is not None else {}
    replicas = _replicas(name, entry, state, attempts) if entry is not None else []
    entry = entry or {}
    return ServiceView(
        name=name, breaker=breaker, replicas=replicas, requests=totals.requests,
        errors=totals.errors, client_errors=totals.client_errors, requests_per_second=rate,
        error_rate=errors / requests if requests > 0 else None,
        p50_ms=None if p50 is None else p50 * 1000, p99_ms=None if p99 is None else p99 * 1000,
        routes=_strings(entry.get("route_templates")),
        balancing=entry.get("balancing") if isinstance(entry.get("balancing"), str) else None,
        timeout=_number(entry.get("timeout")),
        route_timeouts={
            str(route): seconds
            for route, value in _mapping(entry.get("route_timeouts")).items()
            if (seconds := _number(value)) is not None
        },
        idempotent_routes=_strings(entry.get("idempotent_routes")),
    )  # fmt: skip


def _replicas(
    name: str,
    entry: Mapping[str, Any],
    state: Mapping[str, Any],
    attempts: Mapping[tuple[str, str], float],
) -> list[ReplicaView]:
    """The replicas the gateway described, then those of the registry it has not met."""
    views: list[ReplicaView] = []
    raw = state.get("replicas")
    for replica in raw if isinstance(raw, list) else []:
        if not isinstance(replica, dict) or not isinstance(replica.get("url"), str):
            continue
        url = replica["url"]
        views.append(ReplicaView(
            url=url, available=replica.get("available") is True,
            healthy=replica.get("healthy") is True,
            in_flight=int(_number(replica.get("in_flight")) or 0),
            failures_in_a_row=int(_number(replica.get("failures_in_a_row")) or 0),
            ejected_for_seconds=_number(replica.get("ejected_for_seconds")) or 0.0,
            attempts=attempts.get((name, url), 0.0),
        ))  # fmt: skip
    seen = {view.url for view in views}
    for url in _strings(entry.get("replicas")):
        if url not in seen:
            views.append(ReplicaView(
                url=url, available=True, healthy=True, in_flight=0, failures_in_a_row=0,
                ejected_for_seconds=0.0, attempts=attempts.get((name, url), 0.0), known=False,
            ))  # fmt: skip
    return views


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _connect_reason(err: httpx.ConnectError) -> str:
    text = str(err).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "nodename" in text or "getaddrinfo" in text:
        return "the host name does not resolve"
    return _short(err)
