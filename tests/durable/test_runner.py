"""The journal, replay checks, recorded model calls, and durable config runs from the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmagentos import Agent
from llmagentos.cli.main import main
from llmagentos.durable import DurableModel, Journal, run_durable
from llmagentos.exceptions import JournalError, ResumeMismatch
from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import ModelRequest, ModelResponse, Usage
from llmagentos.modules import ExecutionModule, PlanningModule
from llmagentos.rl import RandomSelector
from llmagentos.safety import Budget
from llmagentos.types import Decision

ROOT = Path(__file__).resolve().parents[2]


def _random_agent(seed: int | None) -> Agent:
    return Agent(
        planning_module=PlanningModule(RandomSelector(4, seed=seed)),
        execution_module=ExecutionModule("FrozenLake-v1"),
    )


def test_every_step_is_in_the_journal_before_the_next(tmp_path):
    agent = _random_agent(0)
    counts: list[int] = []
    journal = Journal(tmp_path / "run.db")
    agent.listeners.append(lambda record: counts.append(journal.step_count()))
    result = run_durable(agent, journal, 5, seed=0)
    assert result.completed
    # Each listener call sees the steps before it committed (the listener runs in step()).
    assert counts == list(range(len(counts)))
    assert journal.step_count() == sum(e.length for e in result.run.episodes)
    first = journal.step(0)
    assert first is not None
    assert set(first) >= {"observation", "features", "action", "reason", "reward", "info"}
    assert len(journal.episodes()) == 5
    journal.close()


class _Drifting(PlanningModule):
    """Acts from a counter that a reset does not reseed: not reproducible across starts."""

    def __init__(self, start: int) -> None:
        super().__init__()
        self.calls = start

    def plan(self, features: object) -> int:
        self.calls += 1
        return self.calls % 4


def test_a_non_deterministic_agent_is_caught_on_replay(tmp_path):
    def agent(start: int) -> Agent:
        return Agent(
            planning_module=_Drifting(start), execution_module=ExecutionModule("FrozenLake-v1")
        )

    assert run_durable(agent(0), tmp_path / "run.db", 3, seed=5).completed
    with pytest.raises(ResumeMismatch, match="replay differs from the journal at step 0: action"):
        run_durable(agent(1), tmp_path / "run.db", 3, seed=5)
    with Journal(tmp_path / "run.db") as journal:
        assert journal.status().state == "failed"


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    bogus = tmp_path / "run.db"
    bogus.write_text("not sqlite at all, just text " * 100)
    with pytest.raises(JournalError, match="cannot open journal"):
        Journal(bogus)
    with pytest.raises(JournalError, match="no journal"):
        Journal(tmp_path / "missing.db", create=False)


class _AskingPlanner(PlanningModule):
    """Asks a model for each action (sampled: each call answers differently)."""

    def __init__(self, model: DurableModel) -> None:
        super().__init__()
        self.model = model

    def decide(self, features: object) -> Decision:
        reply = self.model.request(ModelRequest.model_validate({"messages": [
            {"role": "user", "content": f"state {features}"}]}))  # fmt: skip
        return Decision(int(reply.text or 0) % 4, f"model said {reply.text}")


def test_model_calls_are_recorded_once_and_replayed(tmp_path):
    calls: list[int] = []

    def answer(request: ModelRequest) -> ModelResponse:
        calls.append(1)
        # Not a function of the request: a replay that asked again would diverge.
        return ModelResponse(text=str(len(calls) * 7919 % 13), usage=Usage(prompt_tokens=3))

    def agent() -> Agent:
        planner = _AskingPlanner(DurableModel(FunctionModel(answer)))
        return Agent(planning_module=planner, execution_module=ExecutionModule("FrozenLake-v1"))

    first = run_durable(agent(), tmp_path / "run.db", 4, seed=0)
    asked = len(calls)
    assert asked == sum(e.length for e in first.run.episodes)
    again = run_durable(agent(), tmp_path / "run.db", 4, seed=0)  # a full replay
    assert len(calls) == asked  # no model call made twice
    assert [e.total_reward for e in again.run.episodes] == [
        e.total_reward for e in first.run.episodes
    ]
    with Journal(tmp_path / "run.db") as journal:
        reason = (journal.step(0) or {})["reason"]
    assert reason.startswith("model said ")
    # Tokens are charged to the budget, replayed calls included.
    capped = run_durable(agent(), tmp_path / "capped.db", 4, seed=0, budget=Budget(tokens=10))
    assert capped.state == "budget_exceeded" and "tokens" in (capped.detail or "")


def test_a_killed_config_run_resumes_from_the_cli_with_identical_results(tmp_path, capsys):
    config = ROOT / "examples" / "configs" / "taxi.toml"
    twin = tmp_path / "twin"
    args = ["--train-episodes", "300", "--eval-episodes", "20", "-q"]
    assert main(["run", str(config), "-o", str(twin), *args]) == 0
    run = tmp_path / "run"
    command = [sys.executable, "-m", "llmagentos", "run", str(config), "-o", str(run),
               "--durable", *args]  # fmt: skip
    worker = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    journal_path = run / "run.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and worker.poll() is None:
        if journal_path.exists() and Journal(journal_path).step_count() > 2000:
            break
        time.sleep(0.05)
    assert worker.poll() is None, "the run ended before the kill"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert not (run / "results.json").exists()

    assert main(["runs", "list", str(tmp_path)]) == 0
    assert "running" in capsys.readouterr().out
    assert main(["runs", "resume", str(run), "-q"]) == 0
    mine = json.loads((run / "results.json").read_text())
    theirs = json.loads((twin / "results.json").read_text())
    for phase in ("train", "eval"):
        assert mine[phase]["returns"] == theirs[phase]["returns"]
    mine_q = json.loads((run / "qtable.json").read_text())
    theirs_q = json.loads((twin / "qtable.json").read_text())
    assert (mine_q["values"], mine_q["visits"]) == (theirs_q["values"], theirs_q["visits"])
    assert main(["runs", "audit", str(run), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "completed" in out and "audit trail" in out
    assert main(["runs", "resume", str(tmp_path / "twin")]) == 2  # not a durable run


async def test_many_durable_agents_share_one_event_loop(tmp_path):
    from llmagentos.durable import DurableRunner

    async def run_all() -> list[list[float]]:
        runners = [DurableRunner(tmp_path / f"a{i}.db", agent=f"a{i}") for i in range(20)]
        results = await asyncio.gather(
            *(r.arun(_random_agent(i), 3, seed=i) for i, r in enumerate(runners))
        )
        for runner in runners:
            runner.close()
        return [[e.total_reward for e in r.episodes] + [len(r.episodes)] for r in results]

    first = await run_all()
    replayed = await run_all()  # every journal replays in full, step-checked
    assert first == replayed
    sync = [
        [e.total_reward for e in run_durable(_random_agent(i), tmp_path / f"s{i}.db", 3,
                                             seed=i).run.episodes] + [3]
        for i in range(20)
    ]  # fmt: skip
    assert first == sync
    with Journal(tmp_path / "a7.db") as journal:
        assert journal.step_count() > 0 and len(journal.episodes()) == 3


def test_a_config_budget_stops_the_run_with_exit_code_3(tmp_path, capsys):
    config = tmp_path / "capped.toml"
    text = (ROOT / "examples" / "configs" / "taxi.toml").read_text()
    config.write_text(text + "\n[budget]\nsteps = 500\n")
    out = tmp_path / "capped"
    code = main(["run", str(config), "-o", str(out), "--train-episodes", "50", "-q"])
    assert code == 3
    results = json.loads((out / "results.json").read_text())
    assert results["stopped"].startswith("budget_exceeded: ")
    assert "steps budget (501 of 500)" in results["stopped"]
    assert results["train"]["steps"] <= 500
    config.write_text(text + "\n[budget]\nsteps = -5\n")
    assert main(["run", str(config), "-o", str(tmp_path / "bad"), "-q"]) == 2
    assert "budget.steps" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
