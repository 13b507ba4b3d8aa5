"""``Decision.details`` (what a planner weighed) reaches every place a step is kept:
listeners, the trace file, the durable journal, and a remote planner's replies."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmagentos import Agent
from llmagentos._processes import start_server, stop_processes
from llmagentos.durable import Journal, run_durable
from llmagentos.modules import ExecutionModule, PlanningModule
from llmagentos.trace import TraceWriter
from llmagentos.types import Decision, StepRecord

ROOT = Path(__file__).resolve().parents[1]


class CountingPlanner(PlanningModule):
    """Cycles through Taxi's actions and says so in its details."""

    def __init__(self, env: Any = None) -> None:
        super().__init__()
        self.n = 0

    def decide(self, features: Any) -> Decision:
        self.n += 1
        action = self.n % 6
        details = {"source": "count", "n": self.n, "weighed": [action, (action + 1) % 6]}
        return Decision(action, f"count: {self.n}", [0.0] * 6, details)


def counting_planner(env: Any = None) -> CountingPlanner:
    return CountingPlanner(env)


def _agent(planning: PlanningModule | None = None) -> tuple[Agent, list[StepRecord]]:
    records: list[StepRecord] = []
    agent = Agent(
        planning_module=planning or CountingPlanner(),
        execution_module=ExecutionModule("Taxi-v4"),
        on_step=[records.append],
    )
    return agent, records


def _expected(records: list[StepRecord]) -> None:
    assert records
    for index, record in enumerate(records, start=1):
        assert record.details == {
            "source": "count", "n": index, "weighed": [index % 6, (index + 1) % 6],
        }  # fmt: skip


def test_listeners_and_the_trace_get_the_details(tmp_path: Path) -> None:
    agent, records = _agent()
    with TraceWriter(tmp_path / "trace.jsonl") as trace:
        agent.listeners.append(trace)
        agent.run(1, seed=0, max_steps=20)
    _expected(records)
    lines = [json.loads(x) for x in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert [line["details"] for line in lines] == [r.details for r in records]


def test_the_async_loop_gets_them_too() -> None:
    agent, records = _agent()
    asyncio.run(agent.arun(1, seed=0, max_steps=20))
    _expected(records)


def test_the_journal_keeps_them(tmp_path: Path) -> None:
    agent, records = _agent()
    run_durable(agent, tmp_path / "run.db", 1, seed=0, max_steps=20)
    with Journal(tmp_path / "run.db", create=False) as journal:
        kept = [step.get("details") for step in journal.steps()]
    assert kept == [r.details for r in records] and len(kept) == 20


@pytest.fixture(scope="module")
def planning_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("fastapi", reason="needs llmagentos[serve]")
    config = tmp_path_factory.mktemp("service") / "counting.toml"
    config.write_text(
        '[env]\nid = "Taxi-v4"\n\n[agent.planning]\n'
        'type = "tests.test_decision_details:counting_planner"\n'
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    process, url = start_server(["llmagentos", "serve", str(config)], env=env)
    yield url
    stop_processes(process)


def test_a_remote_planner_s_details_come_back_over_http(planning_service: str) -> None:
    from llmagentos.service import remote_modules

    (planning,) = remote_modules(planning_service, "planning")
    agent, records = _agent(planning)
    agent.run(1, seed=0, max_steps=20)
    _expected(records)
