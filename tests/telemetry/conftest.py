"""Telemetry is process-wide: every test here turns it off again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmagentos.telemetry import shutdown_telemetry


@pytest.fixture(autouse=True)
def telemetry_off_after() -> Iterator[None]:
    yield
    shutdown_telemetry()
