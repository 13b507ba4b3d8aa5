"""The gateway's service registry: services by name, each with its replicas.

Services come from the gateway's config at start and from the register/deregister
API at run time, so services are added and removed while the gateway runs. Each
service carries its per-route settings (timeout, which routes are idempotent) and may
choose its own balancing (``"session"`` keeps each session on one replica).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from llmagentos.exceptions import ConfigError
from llmagentos.gateway.balancer import BALANCING

__all__ = ["ServiceEntry", "ServiceRegistry", "check_replica_url", "check_service_name"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_PREFIX_RE = re.compile(r"(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+")


#: First path segments the gateway answers itself.
RESERVED_NAMES = frozenset({"v1", "gateway", "healthz", "readyz", "metrics", "openapi.json"})


def check_service_name(name: str, *, field_name: str = "service") -> str:
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise ConfigError(
            field_name, f"service names are 1-64 of a-z, 0-9, '-' and '_' (got {name!r})"
        )
    if name in RESERVED_NAMES:
        raise ConfigError(field_name, f"{name!r} is the gateway's own path; pick another name")
    return name


def check_replica_url(url: str, *, field_name: str = "url") -> str:
    """``url`` without its trailing ``/`` if it is a plain http(s) URL with a host.

    Its path, if any, is a prefix put before every route exactly as written (and signed
    so), so it may hold only plain segments: no dot segments, escapes or empty ones.
    Where its host may point is :mod:`.networks`' to check.
    """
    if not url.isprintable() or any(c.isspace() for c in url):
        # urlsplit strips or keeps them, and a resolver stops at a NUL: the address
        # checked would not be the one connected to.
        raise ConfigError(field_name, f"a replica URL has no spaces or controls (got {url!r:.80})")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError as err:
        raise ConfigError(field_name, f"not a URL: {url!r} ({err})") from err
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(field_name, f"expected an http(s) URL with a host, got {url!r}")
    if "@" in parts.netloc:
        raise ConfigError(field_name, f"a replica URL has no user info (got {url!r})")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ConfigError(field_name, f"a replica URL has no query or fragment (got {url!r})")
    prefix = parts.path.rstrip("/")
    if prefix and not _PREFIX_RE.fullmatch(prefix):
        raise ConfigError(
            field_name, f"a replica URL's path is plain segments (a-z, 0-9, '_', '-'), got {url!r}"
        )
    return url.rstrip("/")


@dataclass(slots=True)
class ServiceEntry:
    """One service: its replicas and its route settings."""

    name: str
    replicas: list[str] = field(default_factory=list)
    timeout: float = 30.0
    idempotent_routes: tuple[str, ...] = ()
    route_timeouts: dict[str, float] = field(default_factory=dict)
    balancing: str | None = None  # None: the gateway's default
    max_in_flight: int | None = None  # None: only the gateway's overall limit
    _next: int = 0

    def timeout_for(self, route: str) -> float:
        """The timeout of the longest ``route_timeouts`` prefix of ``route``, else the service's."""
        best, seconds = -1, self.timeout
        for prefix, limit in self.route_timeouts.items():
            if route.startswith(prefix) and len(prefix) > best:
                best, seconds = len(prefix), limit
        return seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "replicas": list(self.replicas),
            "timeout": self.timeout,
            "idempotent_routes": list(self.idempotent_routes),
            "route_timeouts": dict(self.route_timeouts),
            "balancing": self.balancing,
            "max_in_flight": self.max_in_flight,
        }


class ServiceRegistry:
    """Services by name; safe to change while requests are being routed."""

    def __init__(self, services: Iterable[Mapping[str, Any]] = ()) -> None:
        self._services: dict[str, ServiceEntry] = {}
        self._lock = threading.Lock()
        for index, spec in enumerate(services):
            self.add_service(spec, field_prefix=f"services[{index}]")

    def add_service(
        self, spec: Mapping[str, Any], *, field_prefix: str = "service"
    ) -> ServiceEntry:
        """Add (or replace) a service from ``{"name", "replicas", "timeout", ...}``."""
        known = {
            "name", "replicas", "timeout", "idempotent_routes", "route_timeouts", "balancing",
            "max_in_flight",
        }  # fmt: skip
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ConfigError(f"{field_prefix}.{unknown[0]}", "unknown field")
        name = check_service_name(str(spec.get("name", "")), field_name=f"{field_prefix}.name")
        replicas = [
            check_replica_url(str(url), field_name=f"{field_prefix}.replicas[{i}]")
            for i, url in enumerate(spec.get("replicas", []))
        ]
        timeout = spec.get("timeout", 30.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"{field_prefix}.timeout", f"must be a number > 0 (got {timeout!r})")
        routes = tuple(str(route) for route in spec.get("idempotent_routes", ()))
        route_timeouts: dict[str, float] = {}
        for prefix, limit in dict(spec.get("route_timeouts", {})).items():
            where = f"{field_prefix}.route_timeouts.{prefix}"
            if not str(prefix).startswith("/"):
                raise ConfigError(where, "route prefixes start with '/'")
            if isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0:
                raise ConfigError(where, f"must be a number > 0 (got {limit!r})")
            route_timeouts[str(prefix)] = float(limit)
        balancing = spec.get("balancing")
        if balancing is not None and balancing not in BALANCING:
            raise ConfigError(
                f"{field_prefix}.balancing", f"one of {', '.join(BALANCING)} (got {balancing!r})"
            )
        limit = spec.get("max_in_flight")
        bad_limit = isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        if limit is not None and bad_limit:
            raise ConfigError(
                f"{field_prefix}.max_in_flight", f"must be an integer >= 1 (got {limit!r})"
            )
        entry = ServiceEntry(
            name, replicas, float(timeout), routes, route_timeouts, balancing, limit
        )
        with self._lock:
            self._services[name] = entry
        return entry

    def register(self, name: str, url: str) -> ServiceEntry:
        """Add a replica (creating the service if new); registering twice is a no-op."""
        check_service_name(name)
        url = check_replica_url(url)
        with self._lock:
            entry = self._services.setdefault(name, ServiceEntry(name))
            if url not in entry.replicas:
                entry.replicas.append(url)
            return entry

    def deregister(self, name: str, url: str) -> bool:
        """Remove a replica; a service with no replicas left is removed. Returns if found."""
        url = url.rstrip("/")
        with self._lock:
            entry = self._services.get(name)
            if entry is None or url not in entry.replicas:
                return False
            entry.replicas.remove(url)
            if not entry.replicas:
                del self._services[name]
            return True

    def follow(self, services: Mapping[str, list[str]]) -> list[str]:
        """Take ``services``' replicas (from the shared registry): services missing are
        removed, new ones made with the defaults; returns the names removed."""
        with self._lock:
            gone = [name for name in self._services if name not in services]
            for name in gone:
                del self._services[name]
            for name, urls in services.items():
                self._services.setdefault(name, ServiceEntry(name)).replicas = list(urls)
            return gone

    def get(self, name: str) -> ServiceEntry | None:
        return self._services.get(name)

    def names(self) -> list[str]:
        return sorted(self._services)

    def pick(self, entry: ServiceEntry, *, exclude: Iterable[str] = ()) -> str | None:
        """The next replica round-robin, skipping ``exclude``; ``None`` when none is left."""
        skipped = set(exclude)
        with self._lock:
            candidates = [url for url in entry.replicas if url not in skipped]
            if not candidates:
                return None
            entry._next = (entry._next + 1) % (1 << 30)
            return candidates[entry._next % len(candidates)]

    def to_dict(self) -> list[dict[str, Any]]:
        return [self._services[name].to_dict() for name in self.names()]
