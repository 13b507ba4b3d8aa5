"""Ray workers join the driver's trace: each episode run on a worker is a child of the
driver's rollout span, exported by the worker, and an untraced run exports nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmagentos import Agent
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.telemetry import configure_telemetry, shutdown_telemetry, span
from llmagentos.telemetry.store import read_spans

pytest.importorskip("opentelemetry.sdk", reason="needs llmagentos[telemetry]")

TAXI = load_config("examples/configs/taxi.toml")


@pytest.fixture
def spans_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "spans.jsonl"
    configure_telemetry("file", path=path, service_name="taxi-ray", schedule_delay_millis=50)
    yield path
    shutdown_telemetry()


def _children(records: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if r["parent_id"] == parent["span_id"] and r["trace_id"] == parent["trace_id"]
    ]


def _episodes_under(records: list[dict[str, Any]], rollout: dict[str, Any]) -> set[int]:
    """The episodes traced below ``rollout``, each with its steps, from worker processes."""
    chunks = [r for r in _children(records, rollout) if r["name"] == "run_episodes"]
    assert chunks, "no worker joined the trace"
    assert all(c["attributes"]["llmagentos.worker.pid"] != os.getpid() for c in chunks)
    seen: set[int] = set()
    for chunk in chunks:
        for episode in _children(records, chunk):
            assert episode["name"] == "invoke_agent taxi"
            steps = [r for r in _children(records, episode) if r["name"] == "step"]
            assert len(steps) == episode["attributes"]["llmagentos.length"] > 0
            seen.add(episode["attributes"]["llmagentos.episode"])
    return seen


def test_workers_spans_join_the_drivers_trace(ray_cluster: Any, spans_file: Path) -> None:
    agent: Agent = build_agent(TAXI).agent
    with span("experiment taxi") as root:
        agent.run(6, seed=0, train=True, backend="ray", workers=2)  # actors
        agent.run(8, seed=100, train=False, backend="ray", workers=2)  # tasks
        trace_id = format(root.get_span_context().trace_id, "032x")
    shutdown_telemetry()  # the driver's own spans are flushed; the workers' already were
    records = list(read_spans(spans_file))
    rollouts = [r for r in records if r["name"] == "rollout taxi"]
    assert len(rollouts) == 2 and {r["trace_id"] for r in rollouts} == {trace_id}
    training, evaluation = sorted(rollouts, key=lambda r: r["start_ns"])
    assert _episodes_under(records, training) == set(range(6))
    assert _episodes_under(records, evaluation) == set(range(6, 14))
    pids = {
        c["attributes"]["llmagentos.worker.pid"]
        for c in _children(records, training)
        if c["name"] == "run_episodes"
    }
    assert len(pids) == 2  # both actors exported their own spans


def test_an_untraced_run_on_reused_workers_exports_nothing(
    ray_cluster: Any, spans_file: Path
) -> None:
    agent: Agent = build_agent(TAXI).agent
    with span("traced"):
        agent.run(4, seed=0, train=False, backend="ray", workers=2)
    shutdown_telemetry()
    before = len(list(read_spans(spans_file)))
    assert before > 0
    agent.run(4, seed=0, train=False, backend="ray", workers=2)  # the same warm workers
    time.sleep(1.0)  # a worker still tracing would have exported by now (50 ms batches)
    assert len(list(read_spans(spans_file))) == before
