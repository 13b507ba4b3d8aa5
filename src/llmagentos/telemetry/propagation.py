"""W3C trace context across processes: into outgoing headers, out of incoming ones.

Module services, the gateway and Ray workers join one trace this way: the caller puts
its current span's ``traceparent`` (and ``tracestate``) on the request, and the callee
starts its spans as that span's children.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from llmagentos.telemetry.state import TELEMETRY

__all__ = ["TRACE_HEADERS", "extracted", "inject"]

TRACE_HEADERS = ("traceparent", "tracestate")


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current trace context to ``headers`` (nothing while telemetry is off)."""
    if TELEMETRY.on:
        from opentelemetry.propagate import inject as otel_inject

        otel_inject(headers)
    return headers


@contextlib.contextmanager
def extracted(headers: Mapping[str, Any]) -> Iterator[None]:
    """Make the trace context in ``headers`` the current one for the block."""
    if not TELEMETRY.on or "traceparent" not in headers:
        yield
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    carrier = {key: str(headers[key]) for key in TRACE_HEADERS if key in headers}
    token = context.attach(extract(carrier))
    try:
        yield
    finally:
        context.detach(token)
