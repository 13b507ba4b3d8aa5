"""Agents whose actions are tool calls; the model's mistakes and failing tools are results.

Several agents run at once on one event loop. Each makes the mistakes the issue names
(an unknown tool, arguments of the wrong type, a tool that raises, a tool that never
finishes, code that never terminates) and still finishes its episode; the other agents
are unaffected, and the audit trail says what happened.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any

import pytest

from llmagentos import Agent
from llmagentos.modules import ExecutionModule, LearningModule, PlanningModule
from llmagentos.modules.tool_feedback import (
    OutcomeRecorder,
    ToolOutcomeFeedback,
    ToolSuccessReward,
)
from llmagentos.safety import MemoryAudit
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.executor import ToolExecutor
from llmagentos.tools.gate import ToolGate


@tool(namespace="t")
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(namespace="t")
def explode(message: str) -> str:
    """Always fails."""
    raise RuntimeError(message)


@tool(namespace="t", timeout=0.3)
async def hang() -> str:
    """Never answers in time."""
    await asyncio.sleep(30)
    return "late"


class Script(PlanningModule):
    """Plays a fixed list of actions with a reason each (a stand-in for the LLM planner)."""

    def __init__(self, actions: list[Any]) -> None:
        super().__init__()
        self.actions = actions
        self.index = 0

    def reset(self, *, seed: int | None = None) -> Any:
        self.index = 0
        return super().reset(seed=seed)

    def plan(self, features: Any) -> Any:
        action = self.actions[self.index]
        self.index += 1
        return action


MISTAKES: list[Any] = [
    {"tool": "t.ad", "arguments": {"a": 1, "b": 2}},  # no such tool
    {"tool": "t.add", "arguments": {"a": "one", "b": 2}},  # wrong type
    {"tool": "t.explode", "arguments": {"message": "boom"}},  # raises
    {"tool": "t.hang"},  # never finishes
    "add 1 and 2 please",  # not a tool call at all
    [{"tool": "t.add", "arguments": {"a": 1, "b": 2}},
     {"tool": "t.add", "arguments": {"a": 3, "b": 4}}],
    {"tool": "finish", "arguments": {"answer": 3}},
]  # fmt: skip


def _agent(name: str, registry: ToolRegistry, audit: MemoryAudit, actions: list[Any]) -> Agent:
    gate = ToolGate(registry, agent=name, audit=audit)
    execution = ExecutionModule(
        executor=ToolExecutor(gate, task="add 1 and 2"), feedback=ToolOutcomeFeedback()
    )
    return Agent(
        planning_module=Script(actions),
        execution_module=execution,
        learning_module=LearningModule(OutcomeRecorder(), reward_fn=ToolSuccessReward()),
        name=name,
    )


async def test_mistakes_become_results_and_every_agent_finishes():
    registry = ToolRegistry([add, explode, hang])
    audits = [MemoryAudit() for _ in range(3)]
    agents = [_agent(f"a{i}", registry, audits[i], MISTAKES) for i in range(3)]
    seen: list[list[Any]] = [[] for _ in agents]
    for agent, observations in zip(agents, seen, strict=True):
        agent.listeners.append(lambda record, out=observations: out.append(record))
    started = time.monotonic()
    results = await asyncio.gather(*(agent.arun_episode(seed=0) for agent in agents))
    assert time.monotonic() - started < 10  # the hanging calls were cut at 0.3 s each
    for result, records, audit in zip(results, seen, audits, strict=True):
        assert result.terminated and result.length == len(MISTAKES)
        errors = [r.next_observation[0]["error"] for r in records[:5]]
        assert "t.add" in errors[0]  # the unknown name lists the close match
        assert "a" in errors[1] and "int" in errors[1]  # names the field and the type
        assert errors[2] == "RuntimeError: boom"
        assert "timed out after 0.3 s" in errors[3]
        assert "not a tool call" in errors[4]
        both = records[5].next_observation
        assert [r["value"] for r in both] == [3, 7]  # a correct turn after the mistakes
        assert records[6].next_observation == {"answer": 3}
        # Rewards flowed through the learning module's reward function: -1 per failed call.
        assert [r.learning["reward"] for r in records[:6]] == [-1, -1, -1, -1, -1, 2]
        assert [e["kind"] for e in audit.entries].count("tool_error") == 4
        assert [e["kind"] for e in audit.entries].count("tool_call") == 2


@pytest.mark.skipif(shutil.which("bwrap") is None and shutil.which("unshare") is None,
                    reason="no sandbox backend on this host")  # fmt: skip
def test_code_that_never_terminates_is_a_result_the_agent_sees():
    from llmagentos.tools.code import run_python

    registry = ToolRegistry([run_python])
    audit = MemoryAudit()
    forever = {"tool": "code.run_python",
               "arguments": {"code": "while True: pass", "timeout_seconds": 1}}  # fmt: skip
    hello = {"tool": "code.run_python", "arguments": {"code": "print(6 * 7)"}}
    agent = _agent("coder", registry, audit, [forever, hello, {"tool": "finish"}])
    records: list[Any] = []
    agent.listeners.append(records.append)
    result = agent.run_episode(seed=0)
    assert result.terminated
    stopped = records[0].next_observation[0]["value"]
    assert stopped["ok"] is False and stopped["killed_by"] in ("wall_timeout", "cpu_limit")
    assert records[1].next_observation[0]["value"]["stdout"] == "42\n"
