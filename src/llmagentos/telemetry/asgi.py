"""A server span per HTTP request, as a child of the caller's ``traceparent``.

Pure ASGI middleware for the module services and the gateway. While telemetry is off
it passes requests straight through.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llmagentos.telemetry.propagation import extracted
from llmagentos.telemetry.spans import set_attributes, span
from llmagentos.telemetry.state import TELEMETRY
from llmagentos.telemetry.trace_context import clean_trace_headers

__all__ = ["TracingMiddleware", "collector"]


class TracingMiddleware:
    """Wraps each HTTP request in a ``{method} {route}`` server span.

    Args:
        app: the ASGI app.
        service: what this server is, for the span's ``llmagentos.service`` attribute.
        name_by_route: name the span by the matched route's template (a module
            service's few routes) rather than the path (a gateway's catch-all route,
            whose template says nothing).
    """

    def __init__(
        self, app: Any, *, service: str = "llmagentos", name_by_route: bool = True
    ) -> None:
        self.app, self.service, self.name_by_route = app, service, name_by_route

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" and TELEMETRY.on:
            await self.app(scope, receive, _flushing_at_shutdown(send))
            return
        if scope["type"] != "http" or not TELEMETRY.on:
            await self.app(scope, receive, send)
            return
        headers = _trace_carrier(scope["headers"])
        method, path = scope["method"], scope["path"]
        status = 500

        async def noting(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        attributes = {
            "http.request.method": method,
            "url.path": path,
            "llmagentos.service": self.service,
        }
        with extracted(headers), span(f"{method} {path}", attributes, kind="server") as current:
            try:
                await self.app(scope, receive, noting)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route is not None and self.name_by_route:
                    current.update_name(f"{method} {route}")
                set_attributes(current, {"http.route": route, "http.response.status_code": status})
                if status >= 500:
                    from opentelemetry.trace import Status, StatusCode

                    current.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


def _trace_carrier(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The caller's trace context, checked: nothing for a malformed one (the request
    starts a trace of its own), never a log line an attacker could fill."""
    parent, state = clean_trace_headers(
        (key.decode("latin-1"), value.decode("latin-1"))
        for key, value in raw
        if key in (b"traceparent", b"tracestate")
    )
    if parent is None:
        return {}
    carrier = {"traceparent": parent.header()}
    if state is not None:
        carrier["tracestate"] = state
    return carrier


def _flushing_at_shutdown(send: Any) -> Any:
    """``send``, exporting the queued spans before the server reports it has shut down:
    a server stopped by SIGTERM exits without running ``atexit``, and the spans of its
    last half second would be lost."""

    async def sending(message: Any) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            from llmagentos.telemetry.setup import current_telemetry

            telemetry = current_telemetry()
            if telemetry is not None:
                await asyncio.to_thread(telemetry.flush, 3000)
        await send(message)

    return sending


def collector() -> Any:
    """A ``prometheus_client`` collector of the telemetry totals (empty while off)."""

    class TelemetryCollector:
        def collect(self) -> Any:
            instruments = TELEMETRY.instruments
            if not TELEMETRY.on or instruments is None:
                return iter(())
            from llmagentos.telemetry.metrics import prometheus_families

            return prometheus_families(instruments)

    return TelemetryCollector()
