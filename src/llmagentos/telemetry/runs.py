"""A run's own telemetry: configured from its ``[telemetry]`` section for its duration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmagentos.telemetry.setup import (
    Telemetry,
    configure_telemetry,
    current_telemetry,
    shutdown_telemetry,
)

if TYPE_CHECKING:
    from llmagentos.config import TelemetryConfig

__all__ = ["SPANS_FILE", "close_run_telemetry", "open_run_telemetry"]

SPANS_FILE = "spans.jsonl"


def open_run_telemetry(
    settings: TelemetryConfig, out: Path, name: str, *, keep: bool = False
) -> Telemetry | None:
    """Turn telemetry on as the run's config says, unless the process already has it on
    (a caller's configuration wins, and stays the caller's to shut down).

    The spans file starts empty unless ``keep`` (a durable run continues its own).
    """
    if settings.exporter == "off" or current_telemetry() is not None:
        return None
    if settings.exporter == "file" and not keep:
        (out / SPANS_FILE).unlink(missing_ok=True)
    return configure_telemetry(
        settings.exporter,
        endpoint=settings.endpoint,
        path=out / SPANS_FILE if settings.exporter == "file" else None,
        service_name=settings.service_name or name,
        record_content=settings.record_content,
    )


def close_run_telemetry(telemetry: Telemetry | None) -> dict[str, int] | None:
    """Flush and turn off what :func:`open_run_telemetry` turned on; its final counters."""
    if telemetry is None or current_telemetry() is not telemetry:
        return None
    return shutdown_telemetry()
