"""Turning telemetry on and off: exporters, the bounded queue, and nothing when off."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from llmagentos._processes import free_port
from llmagentos.exceptions import ConfigError
from llmagentos.telemetry import (
    TELEMETRY,
    configure_from_env,
    configure_telemetry,
    shutdown_telemetry,
    span,
)
from llmagentos.telemetry.store import read_spans
from tests.conftest import tabular_agent

pytest.importorskip("opentelemetry.sdk", reason="needs llmagentos[telemetry]")

ROOT = Path(__file__).resolve().parents[2]


def test_off_by_default_nothing_is_imported_or_made() -> None:
    code = (
        "import sys\n"
        "from tests.conftest import tabular_agent\n"
        "tabular_agent().run(3, seed=0)\n"
        "from llmagentos.telemetry import TELEMETRY, span\n"
        "assert not TELEMETRY.on\n"
        "with span('x') as s: assert s is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
        env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_the_file_store_holds_every_span_with_its_parent(tmp_path: Path) -> None:
    store = tmp_path / "spans.jsonl"
    telemetry = configure_telemetry("file", path=store, service_name="unit")
    tabular_agent("Taxi-v4").run(2, seed=0, max_steps=5)
    telemetry.flush()
    spans = list(read_spans(store))
    assert len(spans) == 2 * (1 + 1 + 5 * 5)  # episode, reset, 5 steps of step + 4 phases
    by_id = {s["span_id"]: s for s in spans}
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["invoke_agent agent"] * 2
    assert all(s["parent_id"] in by_id for s in spans if s["parent_id"] is not None)
    assert {s["service"] for s in spans} == {"unit"}
    assert roots[0]["attributes"]["llmagentos.length"] == 5
    # A torn last line (a writer mid-append) is skipped, not an error.
    with store.open("a") as handle:
        handle.write('{"name": "torn"')
    assert len(list(read_spans(store))) == len(spans)
    assert list(read_spans(tmp_path / "missing.jsonl")) == []


def test_a_dead_collector_neither_fails_nor_stops_the_agent() -> None:
    port = free_port()  # nothing listens there
    telemetry = configure_telemetry(
        "otlp", endpoint=f"http://127.0.0.1:{port}", max_queue_size=16, schedule_delay_millis=50
    )
    result = tabular_agent("Taxi-v4").run(4, seed=0, max_steps=20)
    assert len(result.episodes) == 4
    telemetry.flush(timeout_millis=10_000)
    stats = shutdown_telemetry()
    assert stats is not None
    assert stats["spans_ended"] == 4 * (2 + 20 * 5)
    # Every span was either refused by the dead endpoint or dropped on the full queue,
    # and both are counted.
    assert stats["spans_exported"] == 0
    assert stats["export_failures"] + stats["spans_dropped"] >= stats["spans_ended"] - 16
    assert stats["spans_dropped"] > 0


class _SlowExporter:
    """Holds every export until released: the queue in front of it fills."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported: list[Any] = []

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.release.wait(10)
        self.exported.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_a_full_queue_drops_spans_and_counts_them() -> None:
    slow = _SlowExporter()
    telemetry = configure_telemetry(slow, max_queue_size=8, schedule_delay_millis=10)  # type: ignore[arg-type]
    for index in range(100):
        with span("work", {"index": index}):
            pass
    stats = telemetry.stats()
    assert stats["spans_ended"] == 100 and stats["spans_dropped"] >= 100 - 2 * 8
    slow.release.set()
    shutdown_telemetry()


def test_bad_settings_name_their_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for field, settings in (
        ("telemetry.exporter", {"exporter": "jaeger"}),
        ("telemetry.path", {"exporter": "file"}),
        ("telemetry.max_queue_size", {"exporter": "memory", "max_queue_size": 0}),
    ):
        with pytest.raises(ConfigError) as caught:
            configure_telemetry(**settings)  # type: ignore[arg-type]
        assert caught.value.field == field
    assert not TELEMETRY.on  # nothing half-configured
    monkeypatch.setenv("LLMAGENTOS_TELEMETRY", "zipkin")
    with pytest.raises(ConfigError, match="LLMAGENTOS_TELEMETRY"):
        configure_from_env("svc")
    monkeypatch.setenv("LLMAGENTOS_TELEMETRY", "file")
    monkeypatch.setenv("LLMAGENTOS_TELEMETRY_FILE", str(tmp_path / "s.jsonl"))
    telemetry = configure_from_env("svc")
    assert telemetry is not None and TELEMETRY.on
    with span("one"):
        pass
    shutdown_telemetry()
    assert [
        json.loads(line)["name"] for line in (tmp_path / "s.jsonl").read_text().splitlines()
    ] == ["one"]


def test_totals_count_episodes_and_reach_prometheus() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from llmagentos.telemetry.asgi import collector

    configure_telemetry("memory")
    tabular_agent("Taxi-v4").run(3, seed=0, max_steps=10)
    totals = TELEMETRY.instruments.totals()
    assert totals["episode_returns"]["agent"]["count"] == 3
    registry = CollectorRegistry()
    registry.register(collector())
    text = generate_latest(registry).decode()
    assert 'llmagentos_episode_return_mean{agent="agent"}' in text
