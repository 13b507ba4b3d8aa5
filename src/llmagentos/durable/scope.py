"""Where a run stands right now: the step position that names every side effect.

The durable runner opens a :class:`StepScope` for a run and moves it step by step;
tools and models called inside the step (however deep, in threads or tasks) find it
through a context variable. The scope hands out idempotency keys in call order, so
a replayed step asks for the same keys and gets the recorded results back.

A key reads ``<run id>/<agent>/<step>.<kind>.<n>``, e.g. ``Xq3v9LmPaR2c/shop/24.tool.0``:
the run id is made when the journal is created and kept in it (the same on every
resume), so two runs never share a key and a resumed run reuses its own. Keys are
visible ASCII, valid as an HTTP header value.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmagentos.durable.journal import Journal
    from llmagentos.safety.budget import BudgetMeter

__all__ = ["StepScope", "agent_label", "call_key", "current_scope", "new_run_id", "scope_active"]

_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,32}")


_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_run_id() -> str:
    """A fresh run id: 12 letters and digits (71 random bits; never read as an option)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(12))


def agent_label(agent: str) -> str:
    """``agent`` as a key part: itself when short and plain, else a plain prefix and a hash.

    Two names never share a label unless their SHA-256 prefixes collide; the label never
    holds ``/`` (the key's separator), spaces or anything outside visible ASCII.
    """
    if _LABEL.fullmatch(agent):
        return agent
    plain = re.sub(r"[^A-Za-z0-9_.-]+", "_", agent)[:20]
    return f"{plain}~{hashlib.sha256(agent.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


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
        run_id: the run's id, the first part of every key (a durable run's comes from
            its journal; a scope without one makes its own, so keys stay unique).
        seed_base: what sampled model calls' seeds are derived from, with their position
            (the durable runner sets the run's fingerprint digest).
    """

    journal: Journal | None = None
    agent: str = "agent"
    n: int = 0
    reason: str | None = None
    meter: BudgetMeter | None = None
    run_id: str = field(default_factory=new_run_id)
    seed_base: str = ""
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
        return f"{self.run_id}/{agent_label(self.agent)}/{self.n}.{kind}.{seq}"

    def sample_seed(self, key: str) -> int:
        """A sampling seed for the model call ``key``: a function of the run's
        ``seed_base`` and the call's position (agent, step, order), not of the run id
        nor of how many calls this process made before, so a resumed run samples its
        live calls as its fault-free twin does."""
        position = key.split("/", 1)[1] if "/" in key else key
        text = f"{self.seed_base}/{position}".encode()
        return int.from_bytes(hashlib.sha256(text).digest()[:4], "big") & 0x7FFFFFFF


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

    The key is unique per run, agent and call (``<run id>/<agent>/<step>.tool.<n>``)
    and the same when a resumed run makes the call again. A tool that changes the world
    (a payment, an e-mail, an HTTP POST) should send this key along (an
    ``Idempotency-Key`` header, a unique column) so the far side can drop a repeat: the
    journal never re-runs a call that completed, but a call cut off by a crash
    mid-flight runs again on resume.
    """
    return _CALL_KEY.get()


@contextmanager
def calling(key: str) -> Iterator[None]:
    token = _CALL_KEY.set(key)
    try:
        yield
    finally:
        _CALL_KEY.reset(token)
