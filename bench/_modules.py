"""Trivial seed-style modules: each overrides only its seed method and does no work.

With them, an agent's step costs nothing but the framework around the four calls.
"""

from __future__ import annotations

from typing import Any

from llmagentos import Agent, ExecutionModule, LearningModule, PerceptionModule, PlanningModule

OBSERVATION = 0


class EchoPerception(PerceptionModule):
    def perceive(self, observation: Any) -> Any:
        return observation


class ZeroPlanning(PlanningModule):
    def plan(self, features: Any) -> Any:
        return 0


class ConstantExecution(ExecutionModule):
    def execute(self, action: Any) -> tuple[Any, float]:
        return OBSERVATION, 1.0


class NullLearning(LearningModule):
    def learn(self, observation: Any, reward: float) -> None:
        return None


def trivial_agent(**options: Any) -> Agent:
    """A fresh agent of four fresh trivial modules (``options`` go to ``Agent``)."""
    return Agent(EchoPerception(), ZeroPlanning(), ConstantExecution(), NullLearning(), **options)
