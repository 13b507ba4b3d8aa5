"""Learning: reward function and policy optimizer (seed, section 3.5)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from llmagentos.exceptions import ModuleError
from llmagentos.modules.base import Component, Module, only_components, run_sync
from llmagentos.types import Observation, Transition

__all__ = [
    "EnvironmentReward",
    "LearningModule",
    "PolicyOptimizer",
    "RewardFunction",
    "ScaledReward",
]


@runtime_checkable
class RewardFunction(Protocol):
    """Computes the reward the optimizer learns from, given the full transition."""

    def reward(self, transition: Transition) -> float: ...


@runtime_checkable
class PolicyOptimizer(Protocol):
    """Improves the policy from transitions; returns a JSON-able report (or ``None``)."""

    def update(self, transition: Transition) -> dict[str, Any] | None: ...


class EnvironmentReward(Component):
    """The environment's own reward, unchanged."""

    def reward(self, transition: Transition) -> float:
        return transition.reward


class ScaledReward(Component):
    """``scale * reward + offset``, optionally clipped to ``[low, high]``."""

    def __init__(
        self,
        *,
        scale: float = 1.0,
        offset: float = 0.0,
        low: float | None = None,
        high: float | None = None,
    ) -> None:
        self.scale, self.offset, self.low, self.high = scale, offset, low, high

    def reward(self, transition: Transition) -> float:
        value = self.scale * transition.reward + self.offset
        if self.low is not None:
            value = max(value, self.low)
        if self.high is not None:
            value = min(value, self.high)
        return value


class LearningModule(Module):
    """Learns from what the agent's actions led to.

    Override :meth:`learn` (the seed's method, given the new observation and reward),
    :meth:`update` (the full form, given the whole :class:`~llmagentos.types.Transition`),
    or an async twin. Otherwise the module runs its components: ``reward_fn.reward``
    rewrites the transition's reward, then ``optimizer.update`` improves the policy.
    With no optimizer the module learns nothing (useful for pure evaluation).

    Args:
        optimizer: the policy optimizer (e.g. :class:`~llmagentos.rl.QLearning`).
        reward_fn: the reward function (default: the environment's reward).
    """

    kind = "learning"
    _twin_names = ("learn", "update", "alearn", "aupdate")

    optimizer: PolicyOptimizer | None = None
    reward_fn: RewardFunction = EnvironmentReward()

    def __init__(
        self,
        optimizer: PolicyOptimizer | None = None,
        *,
        reward_fn: RewardFunction | None = None,
    ) -> None:
        if optimizer is not None:
            self.optimizer = optimizer
        if reward_fn is not None:
            self.reward_fn = reward_fn

    def components(self) -> Iterable[Component]:
        return only_components(self.reward_fn, self.optimizer)

    def _run_components(self, transition: Transition) -> dict[str, Any] | None:
        optimizer = self.optimizer
        if optimizer is None:
            return None
        reward_fn = self.reward_fn
        if type(reward_fn) is not EnvironmentReward:
            transition.reward = reward_fn.reward(transition)
        return optimizer.update(transition)

    def learn(self, observation: Observation, reward: float) -> None:
        """Learn from the new ``observation`` and ``reward`` (the seed's method).

        The default components need the whole transition, which only the agent knows;
        the agent therefore calls :meth:`update`. Calling ``learn`` directly on a module
        with an optimizer is an error that says so.
        """
        if "alearn" in self._overrides:
            run_sync(self.alearn(observation, reward))
            return
        self._refuse_bare_learn(observation, reward)

    def _refuse_bare_learn(self, observation: Observation, reward: float) -> None:
        if self.optimizer is not None:
            raise ModuleError(
                "learning",
                f"{type(self.optimizer).__name__} learns from whole transitions; "
                "run it through Agent.step() or call update(transition)",
                value={"observation": observation, "reward": reward},
            )

    def update(self, transition: Transition) -> dict[str, Any] | None:
        """Learn from one full transition; return what was learned (JSON-able) or ``None``."""
        overrides = self._overrides
        if "learn" in overrides:
            self.learn(transition.next_observation, transition.reward)
            return None
        if "aupdate" in overrides or "alearn" in overrides:
            return run_sync(self.aupdate(transition))
        return self._run_components(transition)

    async def alearn(self, observation: Observation, reward: float) -> None:
        """Async twin of :meth:`learn`."""
        if "learn" in self._overrides:
            self.learn(observation, reward)
            return
        self._refuse_bare_learn(observation, reward)

    async def aupdate(self, transition: Transition) -> dict[str, Any] | None:
        """Async twin of :meth:`update`."""
        overrides = self._overrides
        if "alearn" in overrides:
            await self.alearn(transition.next_observation, transition.reward)
            return None
        if "update" in overrides or "learn" in overrides:
            return self.update(transition)
        return self._run_components(transition)


LearningModule._kind_base = LearningModule
