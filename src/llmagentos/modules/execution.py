"""Execution: action executor, state manager, feedback collector (seed, section 3.4)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from llmagentos.modules.base import Component, Module, only_components, run_sync
from llmagentos.types import Action, Observation, Outcome

__all__ = [
    "ActionExecutor",
    "EpisodeState",
    "ExecutionModule",
    "FeedbackCollector",
    "PassThroughFeedback",
    "StateManager",
]


@runtime_checkable
class ActionExecutor(Protocol):
    """Carries out actions in the world (an environment, an API, a robot)."""

    def reset(self, *, seed: int | None = None) -> tuple[Observation, dict[str, Any]]: ...

    def execute(self, action: Action) -> Outcome: ...


@runtime_checkable
class StateManager(Protocol):
    """Keeps the agent's current state across steps."""

    def start(self, observation: Observation, info: dict[str, Any]) -> None: ...

    def record(self, action: Action, outcome: Outcome) -> None: ...


@runtime_checkable
class FeedbackCollector(Protocol):
    """Collects the feedback of each action; may enrich or rewrite the outcome."""

    def collect(self, action: Action, outcome: Outcome) -> Outcome: ...


class EpisodeState(Component):
    """The default state manager: the current observation and the episode's running totals."""

    def __init__(self) -> None:
        self.observation: Observation = None
        self.info: dict[str, Any] = {}
        self.steps = 0
        self.total_reward = 0.0
        self.terminated = False
        self.truncated = False

    def start(self, observation: Observation, info: dict[str, Any]) -> None:
        self.observation, self.info = observation, info
        self.steps, self.total_reward = 0, 0.0
        self.terminated = self.truncated = False

    def record(self, action: Action, outcome: Outcome) -> None:
        self.observation, self.info = outcome.observation, outcome.info
        self.steps += 1
        self.total_reward += outcome.reward
        self.terminated, self.truncated = outcome.terminated, outcome.truncated

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "total_reward": self.total_reward}


class PassThroughFeedback(Component):
    """Passes each outcome on unchanged."""

    def collect(self, action: Action, outcome: Outcome) -> Outcome:
        return outcome


_PASS_THROUGH = PassThroughFeedback()


class ExecutionModule(Module):
    """Carries out actions and reports what happened.

    Override :meth:`execute` (the seed's method, returning ``(observation, reward)``),
    :meth:`perform` (the full form returning an :class:`~llmagentos.types.Outcome` with
    ``terminated``/``truncated``/``info``), or an async twin. Otherwise the module runs
    its components: ``executor.execute`` -> ``feedback.collect`` -> ``state.record``.

    Args:
        env: an environment to act in: a Gymnasium id (``"Taxi-v4"``), a
            ``gymnasium.Env``, or any object with Gymnasium's ``reset``/``step``.
            Shorthand for ``executor=EnvExecutor(env)``.
        executor: the action executor (mutually exclusive with ``env``).
        state: the state manager (default :class:`EpisodeState`).
        feedback: the feedback collector (default: pass-through).
        max_episode_steps: cut episodes after this many steps (with ``env`` as an id).
        env_kwargs: keyword arguments for making ``env`` from an id.
    """

    kind = "execution"
    _twin_names = ("execute", "perform", "aexecute", "aperform")

    executor: ActionExecutor | None = None
    feedback: FeedbackCollector = _PASS_THROUGH
    _state: StateManager | None = None

    def __init__(
        self,
        env: Any = None,
        *,
        executor: ActionExecutor | None = None,
        state: StateManager | None = None,
        feedback: FeedbackCollector | None = None,
        max_episode_steps: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if env is not None and executor is not None:
            raise TypeError("pass either env or executor to ExecutionModule, not both")
        if env is not None:
            from llmagentos.envs.executor import EnvExecutor

            executor = EnvExecutor(env, max_episode_steps=max_episode_steps, **(env_kwargs or {}))
        if executor is not None:
            self.executor = executor
        if state is not None:
            self._state = state
        if feedback is not None:
            self.feedback = feedback

    @property
    def state(self) -> StateManager:
        """The state manager (created on first use, so subclasses need not call ``__init__``)."""
        if self._state is None:
            self._state = EpisodeState()
        return self._state

    @property
    def env(self) -> Any:
        """The environment the executor acts in, if it has one."""
        return getattr(self.executor, "env", None)

    def components(self) -> Iterable[Component]:
        return only_components(self.executor, self.state, self.feedback)

    def reset(self, *, seed: int | None = None) -> Observation:
        """Start a new episode and return its first observation (``None`` without executor)."""
        for component in self.components():
            component.reset(seed=seed)
        observation, info = self.executor.reset(seed=seed) if self.executor else (None, {})
        self.state.start(observation, info)
        return observation

    async def areset(self, *, seed: int | None = None) -> Observation:
        return self.reset(seed=seed)

    def _run_components(self, action: Action) -> Outcome:
        executor = self.executor
        if executor is None:
            from llmagentos.exceptions import ModuleError

            raise ModuleError(
                "execution",
                f"{type(self).__name__} has no executor: pass env=... or executor=..., "
                "or override execute()",
                value=action,
            )
        outcome = executor.execute(action)
        feedback = self.feedback
        if feedback is not _PASS_THROUGH:
            outcome = feedback.collect(action, outcome)
        self.state.record(action, outcome)
        return outcome

    def execute(self, action: Action) -> tuple[Observation, float]:
        """Carry out ``action``; return ``(observation, reward)`` (the seed's method)."""
        overrides = self._overrides
        if "perform" in overrides:
            outcome = self.perform(action)
        elif "aperform" in overrides or "aexecute" in overrides:
            return run_sync(self.aexecute(action))
        else:
            outcome = self._run_components(action)
        return outcome.observation, outcome.reward

    def perform(self, action: Action) -> Outcome:
        """Carry out ``action``; return the full outcome."""
        overrides = self._overrides
        if "execute" in overrides:
            observation, reward = self.execute(action)
            return Outcome(observation, reward)
        if "aperform" in overrides or "aexecute" in overrides:
            return run_sync(self.aperform(action))
        return self._run_components(action)

    async def aexecute(self, action: Action) -> tuple[Observation, float]:
        """Async twin of :meth:`execute`."""
        overrides = self._overrides
        if "aperform" in overrides:
            outcome = await self.aperform(action)
        elif "execute" in overrides or "perform" in overrides:
            return self.execute(action)
        else:
            outcome = self._run_components(action)
        return outcome.observation, outcome.reward

    async def aperform(self, action: Action) -> Outcome:
        """Async twin of :meth:`perform`."""
        overrides = self._overrides
        if "aexecute" in overrides:
            observation, reward = await self.aexecute(action)
            return Outcome(observation, reward)
        if "perform" in overrides or "execute" in overrides:
            return self.perform(action)
        return self._run_components(action)

    def close(self) -> None:
        close = getattr(self.executor, "close", None)
        if callable(close):
            close()


ExecutionModule._kind_base = ExecutionModule
