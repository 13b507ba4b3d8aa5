"""Route labels for the gateway's metrics: templates, never raw paths.

A metric labelled with raw paths grows a series per session id. So a route is
labelled with the service's own path template (``/v1/sessions/{session}``) when the
service publishes an OpenAPI document, which the gateway reads from a replica's
``/openapi.json``. Otherwise id-like segments (numbers, UUIDs, long tokens with
digits) become ``{id}``; and past ``max_routes`` distinct labels for one service the
rest count as ``other``, so no service can blow up the gateway's memory.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["RouteLabels"]

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
