"""Safety and control: tool permissions, human approval, run budgets and the audit trail."""

from llmagentos.safety.audit import AuditSink, MemoryAudit
from llmagentos.safety.budget import Budget, BudgetMeter
from llmagentos.safety.policy import ToolPolicy

__all__ = ["AuditSink", "Budget", "BudgetMeter", "MemoryAudit", "ToolPolicy"]
