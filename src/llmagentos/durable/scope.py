"""Where a run stands right now: the step position that names every side effect.

The durable runner opens a :class:`StepScope` for a run and moves it step by step;
tools and models called inside the step (however deep, in threads or tasks) find it
through a context variable. The scope hands out idempotency keys in call order, so
a replayed step asks for the same keys and gets the recorded results back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmagentos.durable.journal import Journal
    from llmagentos.safety.budget import BudgetMeter

__all__ = ["StepScope", "call_key", "current_scope", "scope_active"]

_SCOPE: ContextVar[StepScope | None] = ContextVar("llmagentos_step_scope", default=None)
_CALL_KEY: ContextVar[str | None] = ContextVar("llmagentos_call_key", default=None)


@dataclass(slots=True)
class StepScope:
    """A run's position and the services its side effects use.

    Attributes:
        journal: the durable run's journal, or ``None`` for a run without one.
        agent: the agent's name (for permissions, budgets and the audit trail).
        n: the global index of the current step (0-based, across episodes and phases).
        reason: the planner's stated reason for the action being executed.
        meter: the run's budget meter, if the run has a budget.
    """

    journal: Journal | None = None
    agent: str = "agent"
    n: int = 0
    reason: str | None = None
    meter: BudgetMeter | None = None
    _seq: dict[str, int] = field(default_factory=dict)

    def move_to(self, n: int) -> None:
        """Enter step ``n``: keys restart their counters."""
        if n != self.n:
            self.n = n
            self._seq.clear()
        self.reason = None

    def next_key(self, kind: str) -> str:
        """The next idempotency key for a ``kind`` call (``tool``, ``model``) in this step."""
        seq = self._seq.get(kind, 0)
        self._seq[kind] = seq + 1
        return f"{self.n}.{kind}.{seq}"


def current_scope() -> StepScope | None:
    """The scope of the run this code is part of, if any."""
    return _SCOPE.get()


@contextmanager
def scope_active(scope: StepScope) -> Iterator[StepScope]:
    """Make ``scope`` current for the block (and for the threads and tasks it starts)."""
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def call_key() -> str | None:
    """The idempotency key of the tool call being run, for tools that pass it on.

    A tool that changes the world (a payment, an e-mail, an HTTP POST) should send this
    key along (an ``Idempotency-Key`` header, a unique column) so the far side can drop
    a repeat: the journal never re-runs a call that completed, but a call cut off by a
    crash mid-flight runs again on resume.
    """
    return _CALL_KEY.get()


@contextmanager
def calling(key: str) -> Iterator[None]:
    token = _CALL_KEY.set(key)
    try:
        yield
    finally:
        _CALL_KEY.reset(token)
