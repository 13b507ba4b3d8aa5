"""llmagentos: an operating system for LLM agents.

The seed's public API is importable from here at no cost::

    from llmagentos import Agent, PerceptionModule, PlanningModule, ExecutionModule, LearningModule

So is what an LLM agent reaches for next, each name the same object as at its deep path
(``llmagentos.tools.gate.ToolGate`` is ``llmagentos.ToolGate``)::

    from llmagentos import HybridPlanningModule, LLMPlanningModule      # planners
    from llmagentos import ToolGate, ToolPolicy, ToolRegistry, tool     # tools and the gate
    from llmagentos import Model, ScriptedModel, make_model, Scheduler  # models, the kernel
    from llmagentos import Budget, DurableRunner, run_durable           # durable runs

Everything but the seed's five names is imported on first use, so ``import llmagentos``
stays fast (no numpy, pydantic, gymnasium or asyncio).
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
    from llmagentos.config import load_config
    from llmagentos.durable import DurableModel, DurableRunner, run_durable
    from llmagentos.embeddings import make_embedder
    from llmagentos.envs import make_env
    from llmagentos.experiment import run_experiment
    from llmagentos.kernel import Scheduler
    from llmagentos.llm import FunctionModel, Message, Model, ScriptedModel, make_model
    from llmagentos.memory import MemoryManager, MemoryPolicy, NewMemory
    from llmagentos.modules.hybrid_planning import HybridPlanningModule
    from llmagentos.modules.llm_planning import LLMPlanningModule
    from llmagentos.registration import register, registry
    from llmagentos.rl import ExpectedSarsa, QLearning, QTable, Sarsa
    from llmagentos.safety import Budget, ToolPolicy
    from llmagentos.sandbox import Sandbox
    from llmagentos.tools import ToolRegistry, ToolResult, Workspace, tool
    from llmagentos.tools.gate import ToolGate
    from llmagentos.tools.http import http_tool
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
    # the seed's API
    "Agent",
    "ExecutionModule",
    "LearningModule",
    "PerceptionModule",
    "PlanningModule",
    # records of what agents did
    "Decision",
    "EpisodeResult",
    "Outcome",
    "RunResult",
    "StepRecord",
    "Transition",
    "TraceWriter",
    # tabular learning
    "ExpectedSarsa",
    "QLearning",
    "QTable",
    "Sarsa",
    # LLM planners
    "HybridPlanningModule",
    "LLMPlanningModule",
    # models and the kernel that schedules them
    "FunctionModel",
    "Message",
    "Model",
    "Scheduler",
    "ScriptedModel",
    "make_model",
    # memory and the embedders it searches with
    "MemoryManager",
    "MemoryPolicy",
    "NewMemory",
    "make_embedder",
    # tools, the gate in front of them, the sandbox
    "Sandbox",
    "ToolGate",
    "ToolPolicy",
    "ToolRegistry",
    "ToolResult",
    "Workspace",
    "http_tool",
    "tool",
    # durable runs and their limits
    "Budget",
    "DurableModel",
    "DurableRunner",
    "run_durable",
    # configs, environments, the registry
    "check_env",
    "check_module",
    "load_config",
    "make_env",
    "register",
    "registry",
    "run_experiment",
    "__version__",
]

# Where each lazily imported name lives: the package a user would otherwise import it from.
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
    "load_config": "llmagentos.config",
    "run_experiment": "llmagentos.experiment",
    "HybridPlanningModule": "llmagentos.modules.hybrid_planning",
    "LLMPlanningModule": "llmagentos.modules.llm_planning",
    "FunctionModel": "llmagentos.llm",
    "Message": "llmagentos.llm",
    "Model": "llmagentos.llm",
    "ScriptedModel": "llmagentos.llm",
    "make_model": "llmagentos.llm",
    "Scheduler": "llmagentos.kernel",
    "MemoryManager": "llmagentos.memory",
    "MemoryPolicy": "llmagentos.memory",
    "NewMemory": "llmagentos.memory",
    "make_embedder": "llmagentos.embeddings",
    "Sandbox": "llmagentos.sandbox",
    "ToolGate": "llmagentos.tools.gate",
    "ToolPolicy": "llmagentos.safety",
    "ToolRegistry": "llmagentos.tools",
    "ToolResult": "llmagentos.tools",
    "Workspace": "llmagentos.tools",
    "http_tool": "llmagentos.tools.http",
    "tool": "llmagentos.tools",
    "Budget": "llmagentos.safety",
    "DurableModel": "llmagentos.durable",
    "DurableRunner": "llmagentos.durable",
    "run_durable": "llmagentos.durable",
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
