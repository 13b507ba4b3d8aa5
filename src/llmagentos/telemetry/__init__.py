"""Seeing what agents do: OpenTelemetry traces and metrics, off until configured.

    from llmagentos.telemetry import configure_telemetry

    configure_telemetry("otlp", endpoint="http://127.0.0.1:6006")  # Phoenix, Jaeger, ...
    agent.run(10)   # an ``invoke_agent`` span per episode, ``step`` spans, ``chat`` spans

See docs/telemetry.md for the spans, their attributes and the settings.
"""

from llmagentos.telemetry.setup import (
    ENV_EXPORTER,
    ExporterName,
    Telemetry,
    configure_from_env,
    configure_telemetry,
    current_telemetry,
    shutdown_telemetry,
)
from llmagentos.telemetry.spans import span, traceparent
from llmagentos.telemetry.state import TELEMETRY

__all__ = [
    "ENV_EXPORTER",
    "TELEMETRY",
    "ExporterName",
    "Telemetry",
    "configure_from_env",
    "configure_telemetry",
    "current_telemetry",
    "shutdown_telemetry",
    "span",
    "traceparent",
]
