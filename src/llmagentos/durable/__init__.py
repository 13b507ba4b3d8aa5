"""Durable runs: a SQLite journal of every step, crash-resume, and at-most-once effects."""

from llmagentos.durable.journal import Approval, AuditEntry, Journal, RunStatus
from llmagentos.durable.model import DurableModel
from llmagentos.durable.runner import DurableResult, DurableRunner, run_durable
from llmagentos.durable.scope import StepScope, call_key, current_scope

__all__ = [
    "Approval",
    "AuditEntry",
    "DurableModel",
    "DurableResult",
    "DurableRunner",
    "Journal",
    "RunStatus",
    "StepScope",
    "call_key",
    "current_scope",
    "run_durable",
]
