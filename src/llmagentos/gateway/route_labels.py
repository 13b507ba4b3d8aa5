"""Route labels for the gateway's metrics: templates, never raw paths.

A metric labelled with raw paths grows a series per session id. So a route is
labelled with the service's own path template (``/v1/sessions/{session}``) when the
service publishes an OpenAPI document, which the gateway reads from a replica's
``/openapi.json``. Otherwise id-like segments (numbers, UUIDs, long tokens with
digits) become ``{id}``; and past ``max_routes`` distinct labels for one service the
rest count as ``other``, so no service can blow up the gateway's memory.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmagentos.gateway.hop import signed_headers
from llmagentos.gateway.upstream import UpstreamError
from llmagentos.principal import Principal

if TYPE_CHECKING:
    from llmagentos.gateway.registry import ServiceEntry
    from llmagentos.gateway.upstream import Upstream
    from llmagentos.principal import PrincipalSigner

__all__ = ["RouteLabels", "RouteLearner"]

_PARAM = re.compile(r"\{[^/{}]+\}")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_OTHER = "other"


def _id_like(segment: str) -> bool:
    return (
        segment.isdigit()
        or bool(_UUID.match(segment))
        or (len(segment) >= 16 and any(c.isdigit() for c in segment))
    )


def _generic(route: str) -> str:
    path = route.split("?", 1)[0]
    return "/".join("{id}" if _id_like(part) else part for part in path.split("/"))


class RouteLabels:
    """A bounded label per ``(service, route)``.

    Args:
        max_routes: distinct labels kept per service; later ones are ``other``.
    """

    def __init__(self, *, max_routes: int = 100) -> None:
        self.max_routes = max_routes
        self._templates: dict[str, list[tuple[re.Pattern[str], str]]] = {}
        self._seen: dict[str, set[str]] = {}
        self._cache: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def knows(self, service: str) -> bool:
        """Whether ``service``'s templates were learned."""
        return service in self._templates

    def templates(self, service: str) -> list[str]:
        """The learned templates of ``service``, in matching order."""
        return [template for _, template in self._templates.get(service, ())]

    def learn(self, service: str, openapi: Mapping[str, Any]) -> int:
        """Take the path templates of ``service``'s OpenAPI document; how many."""
        paths = openapi.get("paths")
        if not isinstance(paths, Mapping):
            return 0
        compiled = []
        for template in paths:
            if isinstance(template, str) and template.startswith("/"):
                pattern = _template_pattern(template)
                compiled.append((re.compile(pattern), template))
        # Most literal text first: /v1/sessions/{s}/qtable before /v1/sessions/{s}.
        compiled.sort(key=lambda item: -len(_PARAM.sub("", item[1])))
        with self._lock:
            self._templates[service] = compiled
            self._forget_cached(service)
        return len(compiled)

    def forget(self, service: str) -> None:
        """Drop what is known of ``service`` (it was deregistered)."""
        with self._lock:
            self._templates.pop(service, None)
            self._seen.pop(service, None)
            self._forget_cached(service)

    def label(self, service: str, route: str) -> str:
        """The label for ``route`` (the path after the service name) of ``service``."""
        key = (service, route)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        path = route.split("?", 1)[0]
        templates = self._templates.get(service, ())
        label = next((t for pattern, t in templates if pattern.fullmatch(path)), None)
        if label is None:
            label = _generic(path)
        with self._lock:
            seen = self._seen.setdefault(service, set())
            if label not in seen:
                if len(seen) >= self.max_routes:
                    label = _OTHER
                else:
                    seen.add(label)
            if len(self._cache) >= 10 * self.max_routes * max(1, len(self._seen)):
                self._cache.clear()  # raw routes are unbounded; the cache must not be
            self._cache[key] = label
        return label

    def _forget_cached(self, service: str) -> None:
        for key in [k for k in self._cache if k[0] == service]:
            del self._cache[key]


def _template_pattern(template: str) -> str:
    """``/a/{x}/b`` -> ``/a/[^/]+/b`` (the rest taken literally)."""
    out, last = [], 0
    for match in _PARAM.finditer(template):
        out += [re.escape(template[last : match.start()]), "[^/]+"]
        last = match.end()
    out.append(re.escape(template[last:]))
    return "".join(out)


# Who signs the gateway's own calls to replicas (their route templates): no tenant's
# sessions are reached by them, and no scope is granted.
_GATEWAY_ITSELF = Principal("gateway:internal", "gateway", ())


class RouteLearner:
    """Fetches services' route templates for :class:`RouteLabels` in the background:
    every 30 s at most per service, until one replica answers with an OpenAPI document.

    Args:
        labels: where the templates go.
        upstream: the gateway's client for the hop to replicas.
        signer: signs the gateway's own principal for services that require one.
    """

    def __init__(
        self, labels: RouteLabels, upstream: Upstream, signer: PrincipalSigner | None
    ) -> None:
        self.labels = labels
        self.upstream = upstream
        self.signer = signer
        self._due: dict[str, float] = {}  # service -> when its templates may be fetched
        self._tasks: set[asyncio.Task[None]] = set()

    def learn(self, entry: ServiceEntry) -> None:
        """Start fetching ``entry``'s templates, if due (call from the event loop)."""
        now = time.monotonic()
        if self.labels.knows(entry.name) or self._due.get(entry.name, 0.0) > now:
            return
        self._due[entry.name] = now + 30.0
        task = asyncio.get_running_loop().create_task(self._fetch(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, name: str) -> None:
        """Drop what was learned of a service that is gone."""
        self._due.pop(name, None)
        self.labels.forget(name)

    def cancel(self) -> None:
        """Stop the fetches still running (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()

    async def _fetch(self, entry: ServiceEntry) -> None:
        for url in list(entry.replicas):
            headers = signed_headers(
                [], self.signer, _GATEWAY_ITSELF,
                method="GET", url=url, target="/openapi.json", body=b"",
            )  # fmt: skip
            try:
                reply = await self.upstream.request(
                    "GET", url + "/openapi.json", body=b"", headers=headers, timeout=2.0
                )
                document = json.loads(reply.content) if reply.status == 200 else None
            except (UpstreamError, ValueError):
                continue  # another replica may answer; generic labels meanwhile
            if isinstance(document, dict) and self.labels.learn(entry.name, document):
                return
