"""Making spans: free when telemetry is off, OpenTelemetry's when it is on.

Span names and attributes follow the OpenTelemetry GenAI semantic conventions where
they have one (``chat {model}``, ``execute_tool {name}``, ``invoke_agent {name}``,
``gen_ai.*`` attributes) and use the ``llmagentos.*`` namespace for the rest.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from llmagentos.telemetry.state import TELEMETRY

__all__ = ["attribute", "set_attributes", "span", "span_since", "traceparent"]

_OFF = contextlib.nullcontext()
_KINDS = ("internal", "client", "server", "producer", "consumer")


def attribute(value: Any) -> Any:
    """``value`` as an OpenTelemetry attribute: scalars and lists of them as they are,
    anything else as compact JSON."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and all(
        isinstance(item, str | bool | int | float) for item in value
    ):
        types = {type(item) for item in value}
        if len(types) <= 1:
            return list(value)
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return repr(value)


def set_attributes(target: Any, attributes: Mapping[str, Any]) -> None:
    """Set each attribute that is not ``None`` on ``target`` (a span, or ``None``: nothing)."""
    if target is None:
        return
    for key, value in attributes.items():
        if value is not None:
            target.set_attribute(key, attribute(value))


def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, kind: str = "internal"
) -> contextlib.AbstractContextManager[Any]:
    """A span around a block, the current one inside it (``None`` while telemetry is off).

    An exception leaving the block marks the span as failed and records it.
    """
    if not TELEMETRY.on:
        return _OFF
    return _started(name, attributes, kind)


@contextlib.contextmanager
def _started(name: str, attributes: Mapping[str, Any] | None, kind: str) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind

    span_kind = SpanKind[kind.upper()] if kind in _KINDS else SpanKind.INTERNAL
    with TELEMETRY.tracer.start_as_current_span(name, kind=span_kind) as current:
        if attributes:
            set_attributes(current, attributes)
        yield current


def span_since(name: str, started_ns: int, attributes: Mapping[str, Any] | None = None) -> None:
    """A finished child of the current span that began at ``started_ns`` (``time.time_ns``)
    and ends now: a wait measured after the fact (the scheduler's queue)."""
    if not TELEMETRY.on:
        return
    made = TELEMETRY.tracer.start_span(name, start_time=started_ns)
    set_attributes(made, attributes or {})
    made.end(end_time=time.time_ns())


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (``None`` when off or outside one)."""
    if not TELEMETRY.on:
        return None
    from llmagentos.telemetry.propagation import inject

    return inject({}).get("traceparent")
