"""Permissions, human approval across restarts, budgets and the audit trail."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from llmagentos.cli.main import main
from llmagentos.durable import DurableRunner, Journal, call_digest, run_durable
from llmagentos.exceptions import ApprovalPending, BudgetExceeded, ConfigError, JournalError
from llmagentos.llm.types import ToolCall
from llmagentos.safety import Budget, MemoryAudit, ToolPolicy
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.gate import ApprovalRequest, ToolGate
from tests.durable.ledger_agent import build

EPISODES = 3


def _refunds(ledger: Path) -> int:
    db = sqlite3.connect(ledger)
    (count,) = db.execute("select count(*) from invocations where entry like 'refund%'").fetchone()
    db.close()
    return int(count)


def _start(tmp: Path, *, seed: int = 0):  # a fresh process's view: new agent, new journal
    agent, _ = build(tmp / "ledger.db", seed=seed, refund_every=25)
    return run_durable(agent, tmp / "run.db", EPISODES, seed=seed, max_steps=60), agent


def test_a_sensitive_action_pauses_the_run_until_approved_across_restarts(tmp_path, capsys):
    first, _ = _start(tmp_path)
    assert first.state == "paused"
    assert [a.tool for a in first.pending] == ["ledger.refund"]
    assert _refunds(tmp_path / "ledger.db") == 0  # nothing ran before the decision
    key = first.pending[0].key

    # Restarting without a decision pauses again at the same request, running nothing new.
    again, _ = _start(tmp_path)
    assert again.state == "paused" and again.live_steps == 0
    assert [a.key for a in again.pending] == [key]

    assert main(["runs", "show", str(tmp_path)]) == 0
    assert "ledger.refund" in capsys.readouterr().out
    assert main(["runs", "approve", str(tmp_path), key, "--note", "ok by finance"]) == 0

    resumed, _ = _start(tmp_path)
    # The next refund (step 50) pauses again: approve the rest as they come.
    while resumed.state == "paused":
        assert main(["runs", "approve", str(tmp_path)]) == 0
        resumed, _ = _start(tmp_path)
    assert resumed.state == "completed"
    assert _refunds(tmp_path / "ledger.db") == (EPISODES * 60) // 25
    with Journal(tmp_path / "run.db") as journal:
        kinds = [entry.kind for entry in journal.audit_trail()]
        approved = journal.approval(key)
    assert approved is not None and approved.status == "approved"
    assert approved.note == "ok by finance" and approved.decided_by == "operator"
    assert {"approval_requested", "paused", "approved", "tool_call", "completed"} <= set(kinds)


def test_a_refused_action_becomes_a_result_the_agent_sees(tmp_path):
    first, _ = _start(tmp_path)
    assert first.state == "paused"
    assert main(["runs", "refuse", str(tmp_path), "--note", "no refunds today"]) == 0
    resumed, _ = _start(tmp_path)
    while resumed.state == "paused":
        assert main(["runs", "refuse", str(tmp_path)]) == 0
        resumed, _ = _start(tmp_path)
    assert resumed.state == "completed"
    assert _refunds(tmp_path / "ledger.db") == 0
    with Journal(tmp_path / "run.db") as journal:
        step = journal.step(24)  # the first refund came with step 25 (n = 24)
        errors = [e for e in journal.audit_trail(("tool_error",)) if e.subject == "ledger.refund"]
    assert step is not None and step["info"]["ledger"] == [True, False]
    assert errors and "refused by operator: no refunds today" in errors[0].detail["error"]


def test_deciding_needs_a_pending_request(tmp_path, capsys):
    first, _ = _start(tmp_path)
    key = first.pending[0].key
    assert main(["runs", "approve", str(tmp_path), "99.tool.0"]) == 2
    assert "no approval request '99.tool.0'" in capsys.readouterr().err
    assert main(["runs", "approve", str(tmp_path), key]) == 0
    assert main(["runs", "refuse", str(tmp_path), key]) == 2
    assert "already approved" in capsys.readouterr().err
    assert main(["runs", "approve", str(tmp_path / "nowhere")]) == 2


def test_an_approver_hook_decides_in_process(tmp_path):
    seen: list[ApprovalRequest] = []

    def approver(request: ApprovalRequest) -> bool:
        seen.append(request)
        return len(seen) % 2 == 1  # approve every other refund

    agent, _ = build(tmp_path / "ledger.db", seed=1, refund_every=25, approver=approver)
    result = run_durable(agent, tmp_path / "run.db", EPISODES, seed=1, max_steps=60)
    assert result.state == "completed"
    assert len(seen) == (EPISODES * 60) // 25
    assert seen[0].tool == "ledger.refund" and seen[0].arguments == {"entry": "x"}
    assert seen[0].digest == call_digest("ledger.refund", {"entry": "x"})
    assert _refunds(tmp_path / "ledger.db") == (len(seen) + 1) // 2


def _registry() -> ToolRegistry:
    @tool(namespace="files")
    def read(path: str) -> str:
        """Read a file."""
        return f"contents of {path}"

    @tool(namespace="files")
    def delete(path: str) -> str:
        """Delete a file."""
        return f"deleted {path}"

    return ToolRegistry([read, delete])


def _call(name: str, **arguments: object) -> ToolCall:
    return ToolCall(id="c", name=name, arguments=json.dumps(arguments))


async def test_the_policy_denies_hides_and_audits():
    audit = MemoryAudit()
    gate = ToolGate(_registry(), policy=ToolPolicy(deny=["files.delete"]), audit=audit)
    assert [t.name for t in gate.specs()] == ["files.read"]
    read, delete, unknown = await gate.run_calls(
        [_call("files.read", path="a"), _call("files.delete", path="a"), _call("files.wipe")]
    )
    assert read.ok and read.value == "contents of a"
    assert not delete.ok and "permission denied" in (delete.error or "")
    assert "files.delete" in (delete.error or "")
    assert not unknown.ok and "files.read" in (unknown.error or "")  # close matches listed
    # The calls ran in parallel: audit lines come in completion order.
    lines = sorted((e["subject"], e["kind"]) for e in audit.entries)
    assert lines == [("files.delete", "tool_error"), ("files.read", "tool_call"),
                     ("files.wipe", "tool_error")]  # fmt: skip


async def test_outside_a_durable_run_an_unanswered_approval_stops_the_call():
    ran: list[str] = []

    @tool
    def pay(amount: int) -> int:
        """Pay."""
        ran.append("pay")
        return amount

    gate = ToolGate(ToolRegistry([pay]), policy=ToolPolicy(approve=["pay"]))
    with pytest.raises(ApprovalPending, match="'pay' awaits approval"):
        await gate.run_calls([_call("pay", amount=3)])
    assert ran == []
    gate.approver = lambda request: request.arguments["amount"] < 10
    (ok,) = await gate.run_calls([_call("pay", amount=3)])
    (refused,) = await gate.run_calls([_call("pay", amount=30)])
    assert ok.ok and not refused.ok and "refused by approver hook" in (refused.error or "")
    assert ran == ["pay"]


def test_a_step_budget_stops_the_run_and_says_so(tmp_path):
    agent, _ = build(tmp_path / "ledger.db", seed=2)
    result = run_durable(
        agent, tmp_path / "run.db", EPISODES, seed=2, max_steps=60, budget=Budget(steps=70)
    )
    assert result.state == "budget_exceeded"
    assert "steps budget (71 of 70)" in (result.detail or "")
    with Journal(tmp_path / "run.db") as journal:
        assert journal.step_count() == 70
        assert journal.status().state == "budget_exceeded"
        assert journal.audit_trail(("budget_exceeded",))


def test_a_tool_call_budget_stops_before_the_call(tmp_path):
    agent, _ = build(tmp_path / "ledger.db", seed=2)
    result = run_durable(
        agent, tmp_path / "run.db", 1, seed=2, max_steps=60, budget=Budget(tool_calls=10)
    )
    assert result.state == "budget_exceeded" and "tool_calls" in (result.detail or "")
    db = sqlite3.connect(tmp_path / "ledger.db")
    assert db.execute("select count(*) from invocations").fetchone() == (10,)


def test_budgets_and_policies_reject_bad_values():
    with pytest.raises(ConfigError, match=r"budget\.steps"):
        Budget(steps=-1)
    with pytest.raises(ConfigError, match="allow"):
        ToolPolicy(allow="files.*")  # type: ignore[arg-type]


def test_a_journal_refuses_another_run(tmp_path):
    agent, _ = build(tmp_path / "ledger.db", seed=3)
    assert run_durable(agent, tmp_path / "run.db", 1, seed=3, max_steps=5).completed
    with pytest.raises(JournalError, match=r"belongs to another run .*seed"):
        run_durable(agent, tmp_path / "run.db", 1, seed=4, max_steps=5)


def test_a_budget_exceeded_error_passes_through_modules(tmp_path):
    agent, _ = build(tmp_path / "ledger.db", seed=3)
    runner = DurableRunner(tmp_path / "r.db", budget=Budget(tool_calls=0))
    with pytest.raises(BudgetExceeded):  # raised in the execution module, not wrapped
        runner.run(agent, 1, seed=3, max_steps=5)


def test_a_wall_time_budget_counts_across_restarts(tmp_path):
    agent, _ = build(tmp_path / "ledger.db", seed=4, pause=0.01)  # ~10 ms per step
    budget = Budget(seconds=0.5)
    first = run_durable(agent, tmp_path / "run.db", 20, seed=4, max_steps=60, budget=budget)
    assert first.state == "budget_exceeded" and "seconds budget" in (first.detail or "")
    with Journal(tmp_path / "run.db") as journal:
        spent = journal.status().active_seconds
    assert spent >= 0.5
    # A restart does not get a fresh allowance: the time already spent still counts.
    agent, _ = build(tmp_path / "ledger.db", seed=4, pause=0.01)
    again = run_durable(agent, tmp_path / "run.db", 20, seed=4, max_steps=60, budget=budget)
    assert again.state == "budget_exceeded" and again.live_steps == 0
