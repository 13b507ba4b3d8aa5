"""A seeded Taxi-v4 Q-learning agent whose every step also writes to an external ledger.

The ledger is "the world": a SQLite file outside the journal. Its ``append`` tool keeps
each entry once per idempotency key (as a payment API would) and counts every time it
really ran, so tests can see both the world's state and any repeated call.

Run as a script, it is the worker the crash tests kill and restart::

    python ledger_agent.py JOURNAL LEDGER OUT.json SEED EPISODES [--slow SECONDS]
        [--durability MODE]
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from llmagentos import Agent
from llmagentos.durable import call_key, run_durable
from llmagentos.llm.types import ToolCall
from llmagentos.modules import ExecutionModule, LearningModule, PlanningModule
from llmagentos.modules.base import run_sync
from llmagentos.rl import EpsilonGreedySelector, QLearning, QTable
from llmagentos.safety import ToolPolicy
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.gate import Approver, ToolGate
from llmagentos.types import Outcome


def ledger_tools(path: Path, *, pause: float = 0.0) -> ToolRegistry:
    """The ledger's tools: ``ledger.append`` (idempotent by key) and ``ledger.refund``."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("pragma journal_mode=wal")
    db.execute("create table if not exists entries (key text primary key, entry text)")
    db.execute("create table if not exists invocations (key text, entry text)")

    @tool(namespace="ledger")
    def append(entry: str) -> str:
        """Append an entry to the ledger.

        Args:
            entry: the text to append.
        """
        key = call_key() or "no-key"
        db.execute("insert into invocations values (?, ?)", (key, entry))
        if pause:
            time.sleep(pause)  # widen the window in which a kill lands mid-call
        db.execute("insert or ignore into entries values (?, ?)", (key, entry))
        return key

    @tool(namespace="ledger")
    def refund(entry: str) -> str:
        """Refund an entry (a sensitive action: needs approval).

        Args:
            entry: the entry to refund.
        """
        key = call_key() or "no-key"
        db.execute("insert into invocations values (?, ?)", (key, "refund " + entry))
        db.execute("insert or ignore into entries values (?, ?)", (key, "refund " + entry))
        return key

    return ToolRegistry([append, refund])


class LedgerExecution(ExecutionModule):
    """Steps Taxi, then records the step in the ledger; refunds every 50th step."""

    def __init__(self, gate: ToolGate, *, refund_every: int = 0) -> None:
        super().__init__("Taxi-v4")
        self.gate = gate
        self.refund_every = refund_every
        self.count = 0

    def reset(self, *, seed: int | None = None) -> Any:
        return super().reset(seed=seed)

    def perform(self, action: Any) -> Outcome:
        outcome = super().perform(action)
        self.count += 1
        entry = f"{self.count}:{int(action)}:{outcome.reward:g}"
        calls = [ToolCall(id="a", name="ledger.append", arguments=json.dumps({"entry": entry}))]
        if self.refund_every and self.count % self.refund_every == 0:
            calls.append(ToolCall(id="r", name="ledger.refund", arguments='{"entry": "x"}'))
        results = run_sync(self.gate.run_calls(calls))
        outcome.info = {**outcome.info, "ledger": [r.ok for r in results]}
        return outcome


def build(
    ledger: Path, *, seed: int, pause: float = 0.0, refund_every: int = 0,
    approver: Approver | None = None,
) -> tuple[Agent, QTable]:  # fmt: skip
    q = QTable(6, 500)
    policy = ToolPolicy(allow=["ledger.*"], approve=["ledger.refund"])
    gate = ToolGate(ledger_tools(ledger, pause=pause), policy=policy, approver=approver)
    agent = Agent(
        planning_module=PlanningModule(EpsilonGreedySelector(q, epsilon=0.2, seed=seed)),
        execution_module=LedgerExecution(gate, refund_every=refund_every),
        learning_module=LearningModule(QLearning(q, alpha=0.5, gamma=0.95)),
        name="ledger-taxi",
    )
    return agent, q


def main(argv: list[str]) -> int:
    journal, ledger, out = (Path(a) for a in argv[:3])
    seed, episodes = int(argv[3]), int(argv[4])
    options = dict(zip(argv[5::2], argv[6::2], strict=True))
    pause = float(options.get("--slow", 0.0))
    agent, q = build(ledger, seed=seed, pause=pause)
    result = run_durable(
        agent, journal, episodes, seed=seed, max_steps=60,
        durability=options.get("--durability", "process"),
    )  # fmt: skip
    data = {
        "state": result.state,
        "returns": [e.total_reward for e in result.run.episodes],
        "q": q.to_dict(),
        "replayed": result.replayed_steps,
        "live": result.live_steps,
    }
    out.write_text(json.dumps(data))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
