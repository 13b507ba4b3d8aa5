"""Durable runs: a SQLite journal of every step, crash-resume, and at-most-once effects."""

from llmagentos.durable.digest import call_digest, canonical_json, model_digest
from llmagentos.durable.journal import Approval, AuditEntry, Effect, Journal, RunStatus
from llmagentos.durable.model import DurableModel
from llmagentos.durable.runner import DurableResult, DurableRunner, run_durable
from llmagentos.durable.scope import StepScope, call_key, current_scope

__all__ = [
    "Approval",
    "AuditEntry",
    "DurableModel",
    "DurableResult",
    "DurableRunner",
    "Effect",
    "Journal",
    "RunStatus",
    "StepScope",
    "call_digest",
    "call_key",
    "canonical_json",
    "current_scope",
    "model_digest",
    "run_durable",
]
