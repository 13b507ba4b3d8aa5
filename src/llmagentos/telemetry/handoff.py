"""Spans from other processes in the caller's trace: what a Ray worker is handed.

The driver takes a :func:`handoff` inside its span: the span's trace context and the
settings its telemetry was configured with. A worker runs its part under
:func:`joined`, which configures the worker process the same way (once: Ray reuses
its worker processes), makes the driver's span the parent of the worker's spans, and
exports them before the task returns, since a worker may be killed at any moment
after. A task handed no trace turns off what an earlier task's handoff turned on, so
an untraced run on a reused worker exports nothing.

An ``"otlp"`` exporter sends from each worker to the same collector; a ``"file"``
store is appended to by each worker at the same path on its own node (on one machine:
the driver's file). Spans kept in memory, or by an exporter object, stay with the
driver: its workers' episodes are not traced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

from llmagentos.telemetry.propagation import extracted, inject
from llmagentos.telemetry.setup import (
    DEFAULT_ENDPOINT,
    TelemetrySettings,
    configure_telemetry,
    current_telemetry,
    shutdown_telemetry,
)
from llmagentos.telemetry.state import TELEMETRY

__all__ = ["TraceHandoff", "handoff", "joined"]

_FLUSH_MS = 5000


@dataclass(frozen=True, slots=True)
class TraceHandoff:
    """The caller's trace context and telemetry settings, for another process."""

    carrier: dict[str, str]
    settings: TelemetrySettings


def handoff() -> TraceHandoff | None:
    """The current span's context and how to export like this process does (``None``
    while off, outside a span, or when spans go to memory or an exporter object)."""
    if not TELEMETRY.on:
        return None
    telemetry = current_telemetry()
    carrier = dict(inject({}))
    if telemetry is None or telemetry.settings is None or "traceparent" not in carrier:
        return None
    settings = telemetry.settings
    if settings.exporter == "otlp" and settings.endpoint is None:
        # The driver's environment names the collector; a worker's may not.
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
        settings = replace(settings, endpoint=endpoint)
    return TraceHandoff(carrier, settings)


_configured_here: list[TelemetrySettings] = []
"""The settings a handoff configured this process with (empty: none did)."""


def _configure(settings: TelemetrySettings) -> None:
    current = current_telemetry()
    if current is not None and current.settings == settings:
        return
    configure_telemetry(
        settings.exporter,
        endpoint=settings.endpoint,
        path=settings.path,
        service_name=settings.service_name,
        record_content=settings.record_content,
        metrics=settings.metrics,
    )
    _configured_here[:] = [settings]


@contextlib.contextmanager
def joined(trace: TraceHandoff | None) -> Iterator[None]:
    """Spans made in the block join ``trace`` and are exported by the time it ends."""
    if trace is None:
        if _configured_here and current_telemetry() is not None:
            shutdown_telemetry()  # an earlier task's handoff: this run is not traced
        _configured_here.clear()
        yield
        return
    _configure(trace.settings)
    try:
        with extracted(trace.carrier):
            yield
    finally:
        telemetry = current_telemetry()
        if telemetry is not None:
            telemetry.flush(_FLUSH_MS)
