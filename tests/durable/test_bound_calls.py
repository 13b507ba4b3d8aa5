"""Approvals and recorded effects bind to what a call is (tool and arguments), not where it is.

Today's hole, reproduced first: approve ``shop.refund("o1", 5)``, resume the run with an
agent that calls ``shop.wipe("ALL")`` at the same position, and ``wipe`` ran under the
refund's approval. A recorded result was likewise handed to whatever call came next at
its position.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmagentos import Agent
from llmagentos.durable import Journal, run_durable
from llmagentos.exceptions import ResumeMismatch
from llmagentos.llm.types import ToolCall
from llmagentos.modules import ExecutionModule, PlanningModule
from llmagentos.modules.base import run_sync
from llmagentos.rl import RandomSelector
from llmagentos.safety import ToolPolicy
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.gate import Approver, ToolGate
from llmagentos.types import Outcome


def shop(ran: list[str]) -> ToolRegistry:
    """A shop whose every tool needs approval; ``ran`` lists what really ran."""

    @tool(namespace="shop")
    def refund(order: str, amount: float) -> str:
        """Refund an order."""
        ran.append(f"refund {order} {amount:g}")
        return f"refunded {amount:g} on {order}"

    @tool(namespace="shop")
    def wipe(scope: str) -> str:
        """Delete every order."""
        ran.append(f"wipe {scope}")
        return f"wiped {scope}"

    return ToolRegistry([refund, wipe])


class Scripted(ExecutionModule):
    """Steps FrozenLake and makes the scripted tool calls (one model turn) on step 1."""

    def __init__(self, gate: ToolGate, calls: list[tuple[str, str]]) -> None:
        super().__init__("FrozenLake-v1")
        self.gate, self.calls = gate, calls
        self.count = 0

    def reset(self, *, seed: int | None = None) -> Any:
        self.count = 0
        return super().reset(seed=seed)

    def perform(self, action: Any) -> Outcome:
        outcome = super().perform(action)
        self.count += 1
        if self.count == 1:
            calls = [
                ToolCall(id=f"c{i}", name=n, arguments=a) for i, (n, a) in enumerate(self.calls)
            ]
            results = run_sync(self.gate.run_calls(calls))
            outcome.info = {**outcome.info, "tools": [r.ok for r in results]}
        return outcome


def agent(
    ran: list[str], name: str, arguments: Any, *, approver: Approver | None = None,
    more: tuple[tuple[str, Any], ...] = (), policy: ToolPolicy | None = None,
) -> Agent:  # fmt: skip
    calls = [(n, a if isinstance(a, str) else json.dumps(a)) for n, a in ((name, arguments), *more)]
    gate = ToolGate(shop(ran), policy=policy or ToolPolicy(approve=["shop.*"]), approver=approver)
    return Agent(
        planning_module=PlanningModule(RandomSelector(4, seed=0)),
        execution_module=Scripted(gate, calls),
        name="shop-agent",
    )


REFUND = {"order": "o1", "amount": 5}


def run(journal: Path, ran: list[str], name: str, arguments: Any, **kw: Any):
    return run_durable(agent(ran, name, arguments, **kw), journal, 1, seed=0, max_steps=3)


def test_an_approval_authorises_only_the_call_it_was_given_for(tmp_path):
    journal = tmp_path / "run.db"
    ran: list[str] = []
    first = run(journal, ran, "shop.refund", REFUND)
    assert first.state == "paused" and ran == []
    (pending,) = first.pending
    with Journal(journal) as db:
        db.decide(pending.key, approve=True, by="operator")

    # The same position, another call: it must not run under the refund's approval.
    with pytest.raises(ResumeMismatch) as caught:
        run(journal, ran, "shop.wipe", {"scope": "ALL"})
    assert ran == []
    message = str(caught.value)
    assert "step 0" in message and "shop.refund" in message and "shop.wipe" in message
    assert caught.value.step == 0

    # Same tool, other arguments: refused too.
    with pytest.raises(ResumeMismatch, match="500"):
        run(journal, ran, "shop.refund", {"order": "o1", "amount": 500})
    assert ran == []

    # The approval is still there, for the refund; the refund (even written another way:
    # keys reordered, 5 as 5.0) goes on under it, once.
    with Journal(journal) as db:
        kept = db.approval(pending.key)
    assert kept is not None and kept.status == "approved" and kept.tool == "shop.refund"
    again = run(journal, ran, "shop.refund", '{"amount": 5.0, "order": "o1"}')
    assert again.state == "completed"
    assert ran == ["refund o1 5"]


def test_a_recorded_result_is_replayed_only_for_the_same_call(tmp_path):
    journal = tmp_path / "run.db"
    ran: list[str] = []

    def approve(request: object) -> bool:
        return True

    assert run(journal, ran, "shop.refund", REFUND, approver=approve).state == "completed"
    assert ran == ["refund o1 5"]
    # A replay whose call at that position differs gets neither the recorded result nor
    # a live call: the run stops, naming both calls.
    with pytest.raises(ResumeMismatch, match=r"shop\.refund.*shop\.wipe"):
        run(journal, ran, "shop.wipe", {"scope": "ALL"}, approver=approve)
    assert ran == ["refund o1 5"]
    # The faithful replay still replays without running anything again.
    assert run(journal, ran, "shop.refund", REFUND, approver=approve).state == "completed"
    assert ran == ["refund o1 5"]


def test_a_call_cut_off_mid_flight_runs_again_only_if_it_is_the_same_call(tmp_path):
    journal = tmp_path / "run.db"
    ran: list[str] = []
    registry = shop(ran)

    async def refund_then_die(order: str, amount: float) -> str:
        ran.append(f"refund {order} {amount:g}")
        # The process is stopped while the call is in flight. (On the loop: a sync tool's
        # thread would turn it into an error result, as the tool pool does on purpose.)
        raise KeyboardInterrupt

    dying = tool(namespace="shop", name="refund")(refund_then_die)
    first = agent(ran, "shop.refund", REFUND, approver=lambda r: True)
    gate = first.execution_module.gate  # type: ignore[attr-defined]
    gate.tools = ToolRegistry([dying, registry.get("shop.wipe")])
    with pytest.raises(KeyboardInterrupt):
        run_durable(first, journal, 1, seed=0, max_steps=3)
    assert ran == ["refund o1 5"]
    with Journal(journal) as db:
        assert db.effect_keys("started") and not db.effect_keys("done")
    # Another call under the key the far side may have seen: refused, nothing runs.
    with pytest.raises(ResumeMismatch, match=r"shop\.refund.*shop\.wipe"):
        run(journal, ran, "shop.wipe", {"scope": "ALL"}, approver=lambda r: True)
    assert ran == ["refund o1 5"]
    # The same call runs again (with the same key, for the far side to drop the repeat).
    assert run(journal, ran, "shop.refund", REFUND, approver=lambda r: True).completed
    assert ran == ["refund o1 5", "refund o1 5"]


def test_a_mismatch_anywhere_in_a_turn_runs_no_call_of_it(tmp_path):
    journal = tmp_path / "run.db"
    ran: list[str] = []
    free = ToolPolicy()  # no approvals: the calls would run at once
    turn = (("shop.refund", {"order": "o2", "amount": 1}),)
    assert run(journal, ran, "shop.refund", REFUND, more=turn, policy=free).completed
    assert ran == ["refund o1 5", "refund o2 1"]
    ran.clear()
    swapped = (("shop.wipe", {"scope": "ALL"}),)
    with pytest.raises(ResumeMismatch, match=r"step 0: tool call \S+/0\.tool\.1 "):
        run(journal, ran, "shop.refund", REFUND, more=swapped, policy=free)
    assert ran == []
