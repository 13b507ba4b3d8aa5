"""The tool gate: every tool call an agent makes passes permissions, approval, budget
and the audit trail, and inside a durable run is made at most once.

:class:`ToolGate` wraps a :class:`~llmagentos.tools.base.ToolRegistry` with the same
calling surface (``specs``, ``run_calls``, ``run_to_messages``). Each call is first
given its digest: SHA-256 over the tool's qualified name and the canonical JSON of its
validated arguments (:func:`llmagentos.durable.digest.call_digest`). Then, in order:

1. the run's tool-call budget is charged (a spent budget stops the run);
2. inside a durable run, a call whose idempotency key was recorded before must have
   the recorded digest, else :class:`~llmagentos.exceptions.ResumeMismatch` stops the
   run (naming the step, the recorded call and the new one) before any call of the
   turn runs; a recorded call that completed returns its recorded result;
3. a tool the policy denies becomes an error result the model can read;
4. a tool the policy marks for approval asks the approver hook; with no verdict the
   request is recorded, bound to the call's digest, and the run pauses
   (:class:`~llmagentos.exceptions.ApprovalPending`) until ``llmagentos runs approve``
   or ``refuse`` decides; a refusal becomes an error result. An approval authorises
   only the call with its digest: a resumed run that makes another call at that
   position gets ``ResumeMismatch``, never the old approval;
5. the call runs (the tool can read its key with
   :func:`llmagentos.durable.scope.call_key`), and its result and an audit line are
   committed together.

Journal reads and writes run on the runtime's own pool
(:func:`llmagentos._blocking.run_blocking`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from llmagentos._blocking import run_blocking
from llmagentos.durable.digest import call_digest, canonical_json
from llmagentos.durable.journal import Effect, Journal
from llmagentos.durable.scope import StepScope, calling, current_scope
from llmagentos.exceptions import (
    ApprovalPending,
    BudgetExceeded,
    ModelOutputError,
    ResumeMismatch,
)
from llmagentos.llm.types import Message, Tool, ToolCall
from llmagentos.modules.base import run_sync
from llmagentos.safety.audit import AuditSink, MemoryAudit
from llmagentos.safety.policy import ToolPolicy
from llmagentos.tools.base import FunctionTool, ToolRegistry, ToolResult

__all__ = ["ApprovalRequest", "Approver", "ToolGate"]


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What an approver decides on: one call to a tool that needs approval.

    ``arguments`` are the validated arguments the call runs with; ``digest`` binds them
    and the tool (what a recorded decision authorises).
    """

    key: str
    agent: str
    tool: str
    arguments: Any
    reason: str | None
    digest: str = ""


Approver = Callable[[ApprovalRequest], bool | None]
"""A human-in-the-loop hook: ``True`` approves, ``False`` refuses, ``None`` defers
(the run pauses and the request waits in the journal for ``llmagentos runs approve``)."""


class _Prepared:
    """One call of a turn, ready to run: its key, and (made when first needed: in a
    durable run, or for an approval) its validated arguments and digest."""

    __slots__ = ("_arguments", "_digest", "call", "gate", "key", "recorded")

    def __init__(self, gate: ToolGate, call: ToolCall, key: str) -> None:
        self.gate, self.call, self.key = gate, call, key
        self.recorded: Effect | None = None
        self._arguments: Any = None
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._arguments = self.gate.arguments_of(self.call)
            self._digest = call_digest(self.call.name, self._arguments)
        return self._digest

    @property
    def arguments(self) -> Any:
        """The validated arguments (what the digest is over)."""
        _ = self.digest
        return self._arguments

    def audit_detail(self) -> dict[str, Any]:
        """The call for an audit line: validated and digested when that was needed, as
        the model sent it otherwise (no validation spent outside durable runs)."""
        if self._digest is not None:
            return {"key": self.key, "arguments": self._arguments, "digest": self._digest}
        try:
            sent: Any = self.call.parsed_arguments()
        except ModelOutputError:
            sent = self.call.arguments
        return {"key": self.key, "arguments": sent}


def _show(tool: str, arguments: Any) -> str:
    return f"{tool} {canonical_json(arguments)}"


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
        # Outside a durable run: a scope of the gate's own, with a run id of its own, so
        # its keys (which tools send as Idempotency-Key) are unique too.
        self._own_scope = StepScope(agent=agent)

    def specs(self, namespaces: Sequence[str] | None = None) -> list[Tool]:
        """The specs of the tools the policy permits (denied tools are not offered)."""
        return [t for t in self.tools.specs(namespaces) if self.policy.refusal(t.name) is None]

    def arguments_of(self, call: ToolCall) -> Any:
        """The arguments ``call`` runs with: validated by the tool's own model (defaults
        filled in, values coerced) when it has one; as parsed otherwise; the raw text
        when it is not a JSON object. What a call's digest is taken over."""
        try:
            parsed = call.parsed_arguments()
        except ModelOutputError:
            return call.arguments
        found = self.tools._tools.get(call.name)
        if isinstance(found, FunctionTool):
            try:
                return found.arguments_model.model_validate(parsed).model_dump(mode="json")
            except ValidationError:
                return parsed
        return parsed

    # -- running calls --------------------------------------------------------------------

    async def run_calls(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Run one model turn's calls in parallel; results in call order.

        Raises:
            ApprovalPending: a call awaits approval (the others still ran and are kept).
            BudgetExceeded: the run's tool-call budget is spent.
            ResumeMismatch: a resumed run's call differs from the one recorded at its
                position (no call of the turn ran).
        """
        scope = current_scope() or self._own_scope
        keys = [scope.next_key("tool") for _ in calls]  # in call order: replays match
        prepared = [
            await self._prepare(call, key, scope) for call, key in zip(calls, keys, strict=True)
        ]
        if len(prepared) == 1:  # no task to schedule: a third of the cost of a lone call
            return [await self._run(prepared[0], scope)]
        outcomes = await asyncio.gather(
            *(self._run(item, scope) for item in prepared), return_exceptions=True
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

    async def _prepare(self, call: ToolCall, key: str, scope: StepScope) -> _Prepared:
        """In a durable run: digest the call and check it against what its key recorded."""
        item = _Prepared(self, call, key)
        journal = scope.journal
        if journal is None:
            return item
        digest, arguments = item.digest, item.arguments
        item.recorded = recorded = await run_blocking(journal.effect, key)
        if recorded is not None and (recorded.kind != "tool" or recorded.digest != digest):
            await self._audit(scope, "resume_mismatch", call.name, {
                "key": key, "recorded": _show(recorded.name, recorded.request),
                "recorded_digest": recorded.digest, "replayed": _show(call.name, arguments),
                "replayed_digest": digest,
            })  # fmt: skip
            raise ResumeMismatch(
                scope.n, f"tool call {key}", _show(recorded.name, recorded.request),
                _show(call.name, arguments),
            )  # fmt: skip
        return item

    async def _run(self, item: _Prepared, scope: StepScope) -> ToolResult:
        call, key = item.call, item.key
        journal = scope.journal
        if scope.meter is not None:
            try:
                scope.meter.charge("tool_calls")
            except BudgetExceeded as err:
                await self._audit(scope, "budget_exceeded", call.name, str(err))
                raise
        if journal is not None and item.recorded is not None and item.recorded.status == "done":
            return _recorded_result(journal, item.recorded)
        result = await self._refused(item, scope)
        if journal is not None:
            await run_blocking(
                journal.effect_started, key, "tool", call.name, item.arguments, item.digest
            )
        if result is None:
            with calling(key):
                result = await self.tools.run_call(call, timeout=self.timeout)
        kind = "tool_call" if result.ok else "tool_error"
        detail = {**item.audit_detail(), **_summary(result)}
        if journal is not None:
            line = (scope.n, kind, call.name, scope.reason, detail)
            await run_blocking(journal.effect_done, key, result.model_dump(mode="json"), audit=line)
        else:
            self.audit.audit(kind, call.name, n=scope.n, reason=scope.reason, detail=detail)
        return result

    async def _audit(self, scope: StepScope, kind: str, subject: str, detail: Any) -> None:
        journal = scope.journal
        if journal is None:
            self.audit.audit(kind, subject, n=scope.n, reason=scope.reason, detail=detail)
        else:
            await run_blocking(
                journal.audit, kind, subject, n=scope.n, reason=scope.reason, detail=detail
            )

    async def _refused(self, item: _Prepared, scope: StepScope) -> ToolResult | None:
        """An error result for a denied or refused call; ``None`` when it may run."""
        name = item.call.name
        if name not in self.tools:
            return None  # the registry answers with the close matches
        refusal = self.policy.refusal(name)
        if refusal is not None:
            return ToolResult(ok=False, error=f"permission denied: {refusal}", name=name)
        if not self.policy.needs_approval(name):
            return None
        verdict, by, note = await self._decision(item, scope)
        if verdict:
            return None
        because = f": {note}" if note else ""
        return ToolResult(ok=False, error=f"refused by {by}{because}", name=name)

    async def _decision(self, item: _Prepared, scope: StepScope) -> tuple[bool, str, str | None]:
        """``(approved, by whom, note)``; raises ApprovalPending when nobody decided yet."""
        call, key, arguments, digest = item.call, item.key, item.arguments, item.digest
        journal = scope.journal
        if journal is not None:
            found = await run_blocking(journal.approval, key)
            if found is not None and found.digest != digest:
                # Never the old approval for another call: the run stops, naming both.
                await self._audit(scope, "resume_mismatch", call.name, {
                    "key": key, "approved": _show(found.tool, found.arguments),
                    "approved_digest": found.digest, "replayed": _show(call.name, arguments),
                    "replayed_digest": digest,
                })  # fmt: skip
                raise ResumeMismatch(
                    scope.n, f"the call awaiting approval {key}",
                    _show(found.tool, found.arguments), _show(call.name, arguments),
                )  # fmt: skip
            if found is not None and found.status != "pending":
                return found.status == "approved", found.decided_by or "operator", found.note
            if found is not None:
                raise ApprovalPending(key, call.name, arguments)
        agent = scope.agent if scope is not self._own_scope else self.agent
        request = ApprovalRequest(key, agent, call.name, arguments, scope.reason, digest)
        verdict = None if self.approver is None else self.approver(request)
        detail = {"key": key, "arguments": arguments, "digest": digest}
        if verdict is None:
            if journal is not None:
                line = (scope.n, "approval_requested", call.name, scope.reason, detail)
                await run_blocking(
                    journal.request_approval, key, call.name, arguments, digest, scope.reason,
                    audit=line,
                )  # fmt: skip
            else:
                self.audit.audit(
                    "approval_requested", call.name, n=scope.n, reason=scope.reason, detail=detail
                )
            raise ApprovalPending(key, call.name, arguments)
        by = "approver hook"
        if journal is not None:
            await run_blocking(
                journal.request_approval, key, call.name, arguments, digest, scope.reason
            )
            await run_blocking(_decide, journal, key, bool(verdict), by, digest)
        else:
            self.audit.audit(
                "approved" if verdict else "refused", call.name, n=scope.n,
                reason=scope.reason, detail={"key": key, "by": by, "digest": digest},
            )  # fmt: skip
        return bool(verdict), by, None


def _decide(journal: Journal, key: str, approve: bool, by: str, digest: str) -> None:
    journal.decide(key, approve=approve, by=by, digest=digest)


def _recorded_result(journal: Journal, recorded: Effect) -> ToolResult:
    return recorded.result_as(ToolResult, journal=journal.path, what="result")


def _summary(result: ToolResult) -> dict[str, Any]:
    if result.ok:
        text = result.content()
        return {"ok": True, "value": text if len(text) <= 500 else text[:497] + "..."}
    return {"ok": False, "error": result.error}


def _json_text(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments)
