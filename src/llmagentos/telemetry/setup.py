"""Turning telemetry on: a tracer provider, an exporter, and a bounded queue in between.

Nothing is exported unless configured: :func:`configure_telemetry` names where spans
go (OTLP over HTTP, the console, a local JSON Lines store, memory for tests, or any
OpenTelemetry ``SpanExporter``). Spans are handed to a bounded queue that a background
thread drains, so a slow or dead collector never slows an agent down: when the queue
is full the span is dropped and counted (:meth:`Telemetry.stats`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from llmagentos.exceptions import ConfigError, MissingExtraError
from llmagentos.telemetry.state import TELEMETRY

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "ENV_EXPORTER",
    "ExporterName",
    "Telemetry",
    "TelemetrySettings",
    "configure_from_env",
    "configure_telemetry",
    "current_telemetry",
    "shutdown_telemetry",
]

ExporterName = Literal["otlp", "console", "file", "memory"]
EXPORTERS: tuple[str, ...] = ("otlp", "console", "file", "memory")
ENV_EXPORTER = "LLMAGENTOS_TELEMETRY"
"""Names the exporter for processes that configure themselves (services, workers)."""
ENV_RECORD_CONTENT = "LLMAGENTOS_TELEMETRY_CONTENT"
ENV_FILE = "LLMAGENTOS_TELEMETRY_FILE"
ENV_METRICS = "LLMAGENTOS_TELEMETRY_METRICS"
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"

_lock = threading.Lock()
_current: list[Telemetry] = []


def _sdk() -> Any:
    try:
        import opentelemetry.sdk.trace as sdk_trace
    except ImportError as err:  # pragma: no cover - the extra is in dev
        raise MissingExtraError("tracing", "telemetry", "opentelemetry-sdk") from err
    return sdk_trace


class _CountingExporter:
    """Counts what the wrapped exporter accepted and refused (it runs on the worker thread)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result == SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self.inner, "force_flush", None)
        return bool(flush(timeout_millis)) if flush is not None else True


def _bounded_processor(exporter: _CountingExporter, max_queue: int, delay_ms: int) -> Any:
    """OpenTelemetry's batch processor, counting the spans it drops on a full queue."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    class BoundedSpanProcessor(BatchSpanProcessor):
        dropped = 0
        ended = 0

        def on_end(self, span: ReadableSpan) -> None:
            self.ended += 1
            # The SDK drops the oldest span when its queue is full and only logs it; the
            # count is what a user needs to know that spans went missing.
            queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)
            if queue is not None and len(queue) >= max_queue:
                self.dropped += 1
            super().on_end(span)

    return BoundedSpanProcessor(
        exporter,  # type: ignore[arg-type]  # a SpanExporter by duck typing
        max_queue_size=max_queue,
        schedule_delay_millis=delay_ms,
        max_export_batch_size=min(512, max_queue),
        export_timeout_millis=5000,
    )


def _exporter(
    exporter: ExporterName | SpanExporter, endpoint: str | None, path: Path | None
) -> SpanExporter:
    if not isinstance(exporter, str):
        return exporter
    if exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as err:
            raise MissingExtraError(
                "exporting spans over OTLP", "telemetry", "opentelemetry-exporter-otlp-proto-http"
            ) from err
        base = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
        url = base if base.rstrip("/").endswith("/v1/traces") else base.rstrip("/") + "/v1/traces"
        # A short timeout: a dead collector costs the exporting thread, never the agent.
        return OTLPSpanExporter(endpoint=url, timeout=3)
    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if exporter == "memory":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        return InMemorySpanExporter()
    if exporter == "file":
        from llmagentos.telemetry.store import SpanFileExporter

        if path is None:
            raise ConfigError("telemetry.path", "the file exporter needs a path")
        return cast("SpanExporter", SpanFileExporter(path))  # an exporter by duck typing
    raise ConfigError(
        "telemetry.exporter", f"unknown exporter {exporter!r} (known: {', '.join(EXPORTERS)})"
    )


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """How telemetry was configured by name: what another process needs to export its
    spans to the same place (a Ray worker joining the trace)."""

    exporter: ExporterName
    endpoint: str | None
    path: str | None
    service_name: str
    record_content: bool = False
    metrics: bool = False


class Telemetry:
    """Telemetry as configured: its provider, exporter and counters.

    Attributes:
        exporter: the span exporter (an ``InMemorySpanExporter`` for ``"memory"``).
        provider: the OpenTelemetry tracer provider.
        settings: how it was configured, when by an exporter's name other than
            ``"memory"`` (``None`` for an exporter object or memory: nothing another
            process could export to).
    """

    settings: TelemetrySettings | None = None

    def __init__(  # noqa: PLR0917 - assembled by configure_telemetry only
        self,
        provider: TracerProvider,
        exporter: SpanExporter,
        counting: _CountingExporter,
        processor: Any,
        meter_provider: Any,
        metric_reader: Any,
    ) -> None:
        self.provider = provider
        self.exporter = exporter
        self.meter_provider = meter_provider
        self._metric_reader = metric_reader
        self._counting = counting
        self._processor = processor

    def metrics(self) -> Any:
        """The OpenTelemetry metrics collected so far, for the ``"memory"`` exporter."""
        if self._metric_reader is None or not hasattr(self._metric_reader, "get_metrics_data"):
            raise ConfigError("telemetry.exporter", "only the memory exporter keeps metrics")
        return self._metric_reader.get_metrics_data()

    def spans(self) -> list[ReadableSpan]:
        """The finished spans, for the ``"memory"`` exporter (flushed first)."""
        self.flush()
        finished = getattr(self.exporter, "get_finished_spans", None)
        if finished is None:
            raise ConfigError("telemetry.exporter", "only the memory exporter keeps spans")
        return list(finished())

    def flush(self, timeout_millis: int = 5000) -> bool:
        """Export every queued span now."""
        return bool(self._processor.force_flush(timeout_millis))

    def stats(self) -> dict[str, int]:
        """Spans ended, exported, dropped on a full queue, and refused by the exporter."""
        return {
            "spans_ended": self._processor.ended,
            "spans_exported": self._counting.exported,
            "spans_dropped": self._processor.dropped,
            "export_failures": self._counting.failed,
        }

    def shutdown(self) -> None:
        """Flush what is queued (briefly) and stop exporting."""
        self._processor.shutdown()
        self.meter_provider.shutdown(timeout_millis=3000)


def _meters(
    exporter: Any, endpoint: str | None, service_name: str, *, metrics: bool
) -> tuple[Any, Any]:
    """A meter provider exporting where the spans go (OTLP, or memory for tests)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource

    reader: Any = None
    if exporter == "memory":
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
    elif exporter == "otlp" and metrics:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        base = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
        url = base.rstrip("/").removesuffix("/v1/traces") + "/v1/metrics"
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=url, timeout=3))
    resource = Resource.create({"service.name": service_name})
    provider = MeterProvider(resource=resource, metric_readers=[reader] if reader else [])
    return provider, reader


def configure_telemetry(
    exporter: ExporterName | SpanExporter = "otlp",
    *,
    endpoint: str | None = None,
    path: str | os.PathLike[str] | None = None,
    service_name: str = "llmagentos",
    record_content: bool = False,
    max_queue_size: int = 2048,
    schedule_delay_millis: int = 500,
    metrics: bool = False,
) -> Telemetry:
    """Turn tracing on for this process, replacing any earlier configuration.

    Args:
        exporter: ``"otlp"`` (HTTP to ``endpoint``, default ``OTEL_EXPORTER_OTLP_ENDPOINT``
            or http://127.0.0.1:4318), ``"console"``, ``"file"`` (JSON Lines at ``path``,
            read by ``llmagentos explain`` and the dashboard), ``"memory"``, or any
            OpenTelemetry ``SpanExporter``.
        service_name: the ``service.name`` resource of every span.
        record_content: put prompts, replies and tool arguments into spans (off by
            default: they may hold user data).
        max_queue_size: spans waiting for export; beyond it spans are dropped and counted.
        schedule_delay_millis: how often the queue is drained.
        metrics: export metrics over OTLP too (``"otlp"`` only; off by default, as some
            trace viewers take no metrics). The totals reach ``/metrics`` either way.

    Raises:
        ConfigError: an unknown exporter, a bad size, or ``"file"`` without a path.
        MissingExtraError: OpenTelemetry is not installed (``llmagentos[telemetry]``).
    """
    if max_queue_size < 1:
        raise ConfigError("telemetry.max_queue_size", f"must be >= 1 (got {max_queue_size})")
    if schedule_delay_millis < 1:
        raise ConfigError(
            "telemetry.schedule_delay_millis", f"must be >= 1 (got {schedule_delay_millis})"
        )
    sdk_trace = _sdk()
    from opentelemetry.sdk.resources import Resource

    made = _exporter(exporter, endpoint, None if path is None else Path(path))
    counting = _CountingExporter(made)
    processor = _bounded_processor(counting, max_queue_size, schedule_delay_millis)
    provider = sdk_trace.TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(processor)
    meter_provider, metric_reader = _meters(exporter, endpoint, service_name, metrics=metrics)
    telemetry = Telemetry(provider, made, counting, processor, meter_provider, metric_reader)
    if isinstance(exporter, str) and exporter != "memory":
        telemetry.settings = TelemetrySettings(
            exporter, endpoint, None if path is None else str(Path(path).resolve()), service_name,
            record_content=record_content, metrics=metrics,
        )  # fmt: skip
    from llmagentos.telemetry.metrics import Instruments

    with _lock:
        previous = _current.pop() if _current else None
        TELEMETRY.tracer = provider.get_tracer("llmagentos")
        TELEMETRY.instruments = Instruments(meter_provider.get_meter("llmagentos"))
        TELEMETRY.record_content = record_content
        TELEMETRY.on = True
        _current.append(telemetry)
    if previous is not None:
        previous.shutdown()
    return telemetry


def current_telemetry() -> Telemetry | None:
    """The configuration in force, if tracing is on."""
    with _lock:
        return _current[0] if _current else None


def shutdown_telemetry() -> dict[str, int] | None:
    """Turn tracing off: flush, stop exporting, and return the final counters."""
    with _lock:
        TELEMETRY.on = False
        TELEMETRY.tracer = None
        telemetry = _current.pop() if _current else None
    if telemetry is None:
        return None
    telemetry.shutdown()
    return telemetry.stats()


def configure_from_env(service_name: str) -> Telemetry | None:
    """Configure from ``LLMAGENTOS_TELEMETRY`` (``otlp``/``console``/``file``), if set.

    Services and workers call this at start, so a deployment traces end to end when its
    environment says so; the trace context itself arrives with each request.
    """
    name = os.environ.get(ENV_EXPORTER, "").strip()
    if not name or name == "off":
        return None
    if name not in EXPORTERS or name == "memory":
        raise ConfigError(ENV_EXPORTER, f"must be otlp, console, file or off (got {name!r})")
    return configure_telemetry(
        name,  # type: ignore[arg-type]  # checked above
        path=os.environ.get(ENV_FILE) or None,
        service_name=service_name,
        record_content=os.environ.get(ENV_RECORD_CONTENT, "") in ("1", "true", "yes"),
        metrics=os.environ.get(ENV_METRICS, "") in ("1", "true", "yes"),
    )
