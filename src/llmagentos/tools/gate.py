"""The tool gate: every tool call an agent makes passes permissions, approval, budget
and the audit trail, and inside a durable run is made at most once.

:class:`ToolGate` wraps a :class:`~llmagentos.tools.base.ToolRegistry` with the same
calling surface (``specs``, ``run_calls``, ``run_to_messages``). For each call, in order:

1. the run's tool-call budget is charged (a spent budget stops the run);
2. inside a durable run, a call whose idempotency key completed before returns its
   recorded result without running again;
3. a tool the policy denies becomes an error result the model can read;
4. a tool the policy marks for approval asks the approver hook; with no verdict the
   request is recorded and the run pauses (:class:`~llmagentos.exceptions.ApprovalPending`)
   until ``llmagentos runs approve`` or ``refuse`` decides; a refusal becomes an error
   result;
5. the call runs (the tool can read its key with
   :func:`llmagentos.durable.scope.call_key`), and its result and an audit line are
   committed together.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmagentos.durable.scope import StepScope, calling, current_scope
from llmagentos.exceptions import ApprovalPending, BudgetExceeded, ModelOutputError
from llmagentos.llm.types import Message, Tool, ToolCall
from llmagentos.modules.base import run_sync
from llmagentos.safety.audit import AuditSink, MemoryAudit
from llmagentos.safety.policy import ToolPolicy
from llmagentos.tools.base import ToolRegistry, ToolResult

__all__ = ["ApprovalRequest", "Approver", "ToolGate"]


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What an approver decides on: one call to a tool that needs approval."""

    key: str
    agent: str
    tool: str
    arguments: Any
    reason: str | None


Approver = Callable[[ApprovalRequest], bool | None]
"""A human-in-the-loop hook: ``True`` approves, ``False`` refuses, ``None`` defers
(the run pauses and the request waits in the journal for ``llmagentos runs approve``)."""


def _arguments(call: ToolCall) -> Any:
    try:
        return call.parsed_arguments()
    except ModelOutputError:
        return call.arguments


class ToolGate:
    """A :class:`ToolRegistry` behind permissions, approvals, budgets and an audit trail.

    Args:
        tools: the registry whose tools the agent may call.
        policy: the agent's permissions (default: every tool, no approvals).
        approver: the in-process approval hook, if any.
        agent: the agent's name in audit lines and approval requests (a durable run's
            scope names it otherwise).
        audit: where audit lines go outside a durable run (default: a new
            :class:`MemoryAudit`, readable as ``gate.audit``).
        timeout: a cap on every call's seconds.
    """

    def __init__(
        self,
        tools: ToolRegistry,
        *,
        policy: ToolPolicy | None = None,
        approver: Approver | None = None,
        agent: str = "agent",
        audit: AuditSink | None = None,
        timeout: float | None = None,
    ) -> None:
        self.tools = tools
        self.policy = policy or ToolPolicy()
        self.approver = approver
        self.agent = agent
        self.audit: AuditSink = audit if audit is not None else MemoryAudit()
        self.timeout = timeout
        self._own_scope = StepScope(agent=agent)

    def specs(self, namespaces: Sequence[str] | None = None) -> list[Tool]:
        """The specs of the tools the policy permits (denied tools are not offered)."""
        return [t for t in self.tools.specs(namespaces) if self.policy.refusal(t.name) is None]

    # -- running calls --------------------------------------------------------------------

    async def run_calls(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Run one model turn's calls in parallel; results in call order.

        Raises:
            ApprovalPending: a call awaits approval (the others still ran and are kept).
            BudgetExceeded: the run's tool-call budget is spent.
        """
        scope = current_scope() or self._own_scope
        keys = [scope.next_key("tool") for _ in calls]  # in call order: replays match
        if len(calls) == 1:  # no task to schedule: a third of the cost of a lone call
            return [await self._run(calls[0], keys[0], scope)]
        outcomes = await asyncio.gather(
            *(self._run(call, key, scope) for call, key in zip(calls, keys, strict=True)),
            return_exceptions=True,
        )
        results: list[ToolResult] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            results.append(outcome)
        return results

    async def run_call(self, call: ToolCall) -> ToolResult:
        return (await self.run_calls([call]))[0]

    async def run_to_messages(self, calls: Sequence[ToolCall]) -> list[Message]:
        """:meth:`run_calls`, answered as ``tool`` messages to append to the chat."""
        results = await self.run_calls(calls)
        return [r.to_message(c.id) for c, r in zip(calls, results, strict=True)]

    def call(self, name: str, arguments: dict[str, Any] | str | None = None) -> ToolResult:
        """Run one call synchronously (``arguments`` as a dict or JSON text)."""
        text = arguments if isinstance(arguments, str) else _json_text(arguments or {})
        return run_sync(self.run_call(ToolCall(id="call", name=name, arguments=text)))

    async def _run(self, call: ToolCall, key: str, scope: StepScope) -> ToolResult:
        journal = scope.journal
        if scope.meter is not None:
            try:
                scope.meter.charge("tool_calls")
            except BudgetExceeded as err:
                self._sink(scope).audit(
                    "budget_exceeded", call.name, n=scope.n, reason=scope.reason, detail=str(err)
                )
                raise
        if journal is not None:
            found = journal.effect(key)
            if found is not None and found[0] == "done":
                return ToolResult.model_validate(found[1])
        arguments = _arguments(call)
        result = self._refused(call, arguments, key, scope)
        if journal is not None:
            journal.effect_started(key, "tool", call.name, arguments)
        if result is None:
            with calling(key):
                result = await self.tools.run_call(call, timeout=self.timeout)
        kind = "tool_call" if result.ok else "tool_error"
        detail = {"key": key, "arguments": arguments, **_summary(result)}
        if journal is not None:
            line = (scope.n, kind, call.name, scope.reason, detail)
            journal.effect_done(key, result.model_dump(mode="json"), audit=line)
        else:
            self.audit.audit(kind, call.name, n=scope.n, reason=scope.reason, detail=detail)
        return result

    def _sink(self, scope: StepScope) -> AuditSink:
        return scope.journal if scope.journal is not None else self.audit

    def _refused(
        self, call: ToolCall, arguments: Any, key: str, scope: StepScope
    ) -> ToolResult | None:
        """An error result for a denied or refused call; ``None`` when it may run."""
        name = call.name
        if name not in self.tools:
            return None  # the registry answers with the close matches
        refusal = self.policy.refusal(name)
        if refusal is not None:
            return ToolResult(ok=False, error=f"permission denied: {refusal}", name=name)
        if not self.policy.needs_approval(name):
            return None
        verdict, by, note = self._decision(call, arguments, key, scope)
        if verdict:
            return None
        because = f": {note}" if note else ""
        return ToolResult(ok=False, error=f"refused by {by}{because}", name=name)

    def _decision(
        self, call: ToolCall, arguments: Any, key: str, scope: StepScope
    ) -> tuple[bool, str, str | None]:
        """``(approved, by whom, note)``; raises ApprovalPending when nobody decided yet."""
        journal = scope.journal
        sink = self._sink(scope)
        if journal is not None:
            found = journal.approval(key)
            if found is not None and found.status != "pending":
                return found.status == "approved", found.decided_by or "operator", found.note
            if found is not None:
                raise ApprovalPending(key, call.name, arguments)
        agent = scope.agent if scope is not self._own_scope else self.agent
        request = ApprovalRequest(key, agent, call.name, arguments, scope.reason)
        verdict = None if self.approver is None else self.approver(request)
        if verdict is None:
            if journal is not None:
                journal.request_approval(key, call.name, arguments, scope.reason)
            sink.audit(
                "approval_requested", call.name, n=scope.n, reason=scope.reason,
                detail={"key": key, "arguments": arguments},
            )  # fmt: skip
            raise ApprovalPending(key, call.name, arguments)
        if journal is not None:
            journal.request_approval(key, call.name, arguments, scope.reason)
            journal.decide(key, approve=bool(verdict), by="approver hook")
        sink.audit(
            "approved" if verdict else "refused", call.name, n=scope.n, reason=scope.reason,
            detail={"key": key, "by": "approver hook"},
        )  # fmt: skip
        return bool(verdict), "approver hook", None


def _summary(result: ToolResult) -> dict[str, Any]:
    if result.ok:
        text = result.content()
        return {"ok": True, "value": text if len(text) <= 500 else text[:497] + "..."}
    return {"ok": False, "error": result.error}


def _json_text(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments)
