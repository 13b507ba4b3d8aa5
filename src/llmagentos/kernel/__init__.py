"""The kernel: services shared by every agent in a process.

:class:`Scheduler` is the LLM scheduler: all agents' model calls go through it, with a
concurrency limit per backend, priorities, fair sharing among agents, per-agent budgets,
deadlines, cancellation and batching. See docs/kernel.md.
"""

from llmagentos.kernel.handle import ScheduledModel
from llmagentos.kernel.scheduler import DEFAULT_MAX_IN_FLIGHT, Scheduler, UnknownBackendError

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "ScheduledModel", "Scheduler", "UnknownBackendError"]
