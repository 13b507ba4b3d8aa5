"""llmagentos: an operating system for LLM agents.

The seed's public API is importable from here at no cost::

    from llmagentos import Agent, PerceptionModule, PlanningModule, ExecutionModule, LearningModule

Everything else listed in ``__all__`` is imported on first use, so ``import llmagentos``
stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llmagentos._version import __version__
from llmagentos.agent import Agent
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.perception import PerceptionModule
from llmagentos.modules.planning import PlanningModule

if TYPE_CHECKING:
    from llmagentos.checks import check_env, check_module
    from llmagentos.envs import make_env
    from llmagentos.registration import register, registry
    from llmagentos.rl import ExpectedSarsa, QLearning, QTable, Sarsa
    from llmagentos.trace import TraceWriter
    from llmagentos.types import (
        Decision,
        EpisodeResult,
        Outcome,
        RunResult,
        StepRecord,
        Transition,
    )

__all__ = [
    "Agent",
    "Decision",
    "EpisodeResult",
    "ExecutionModule",
    "ExpectedSarsa",
    "LearningModule",
    "Outcome",
    "PerceptionModule",
    "PlanningModule",
    "QLearning",
    "QTable",
    "RunResult",
    "Sarsa",
    "StepRecord",
    "TraceWriter",
    "Transition",
    "__version__",
    "check_env",
    "check_module",
    "make_env",
    "register",
    "registry",
]

_LAZY = {
    "Decision": "llmagentos.types",
    "EpisodeResult": "llmagentos.types",
    "Outcome": "llmagentos.types",
    "RunResult": "llmagentos.types",
    "StepRecord": "llmagentos.types",
    "Transition": "llmagentos.types",
    "QTable": "llmagentos.rl",
    "QLearning": "llmagentos.rl",
    "Sarsa": "llmagentos.rl",
    "ExpectedSarsa": "llmagentos.rl",
    "TraceWriter": "llmagentos.trace",
    "check_env": "llmagentos.checks",
    "check_module": "llmagentos.checks",
    "make_env": "llmagentos.envs",
    "register": "llmagentos.registration",
    "registry": "llmagentos.registration",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmagentos' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
