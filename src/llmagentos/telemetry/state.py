"""The telemetry switch: one flag the hot paths read, and nothing imported until it is on.

Every instrumented place checks :data:`TELEMETRY.on` (an attribute of a module-level
object: a dict lookup and an attribute read) and does nothing else when it is off, so
an agent that traces nothing pays for nothing. OpenTelemetry is imported only by
:func:`llmagentos.telemetry.configure_telemetry`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TELEMETRY", "Switch"]


class Switch:
    """Whether spans are made, and the tracer that makes them.

    Attributes:
        on: spans and metrics are recorded.
        record_content: prompts, replies and tool arguments go into spans (opt-in: they
            may hold user data).
        tracer: the OpenTelemetry tracer (``None`` while off).
        instruments: the metric instruments (:class:`llmagentos.telemetry.metrics.Instruments`).
    """

    __slots__ = ("instruments", "on", "record_content", "tracer")

    def __init__(self) -> None:
        self.on = False
        self.record_content = False
        self.tracer: Any = None
        self.instruments: Any = None


TELEMETRY = Switch()
"""The process's switch (set by :func:`~llmagentos.telemetry.configure_telemetry`)."""
