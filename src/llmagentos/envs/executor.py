"""The action executor that acts in an environment, checking each action first."""

from __future__ import annotations

import operator
from typing import Any

from llmagentos.envs.make import make_env
from llmagentos.exceptions import ActionError, EnvError
from llmagentos.types import Action, Observation, Outcome

__all__ = ["EnvExecutor"]


class EnvExecutor:
    """Executes actions with ``env.step`` and returns them as outcomes.

    Every action is checked against ``env.action_space`` before it reaches the
    environment (a fast path for ``Discrete`` spaces), so a planner's mistake becomes an
    :class:`~llmagentos.exceptions.ActionError` naming the value, not a crash deep in
    the environment.

    Args:
        env: an environment or an id for :func:`~llmagentos.envs.make_env`.
        max_episode_steps: time limit when ``env`` is made from an id.
        **kwargs: constructor arguments when ``env`` is made from an id.
    """

    def __init__(self, env: Any, *, max_episode_steps: int | None = None, **kwargs: Any):
        self.env = make_env(env, max_episode_steps=max_episode_steps, **kwargs)
        self.action_space = getattr(self.env, "action_space", None)
        self._discrete: tuple[int, int] | None = None
        if self.action_space is not None and type(self.action_space).__name__ == "Discrete":
            start = int(self.action_space.start)
            self._discrete = (start, start + int(self.action_space.n))

    def reset(self, *, seed: int | None = None) -> tuple[Observation, dict[str, Any]]:
        result = self.env.reset(seed=seed)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise EnvError(f"{self.env!r}.reset() must return (observation, info), got {result!r}")
        return result[0], result[1]

    def check_action(self, action: Action) -> Action:
        """Return ``action`` in the form the environment takes, or raise ``ActionError``."""
        bounds = self._discrete
        if bounds is not None:
            try:
                value = operator.index(action)
            except TypeError:
                value = None
            if value is None or not bounds[0] <= value < bounds[1] or isinstance(action, bool):
                raise ActionError(
                    "execution",
                    f"action {action!r} is outside the action space {self.action_space}",
                    value=action,
                )
            return value
        space = self.action_space
        if space is not None and not space.contains(action):
            raise ActionError(
                "execution", f"action {action!r} is outside the action space {space}", value=action
            )
        return action

    def execute(self, action: Action) -> Outcome:
        result = self.env.step(self.check_action(action))
        if not (isinstance(result, tuple) and len(result) == 5):
            raise EnvError(
                f"{self.env!r}.step() must return (observation, reward, terminated, truncated, "
                f"info), got {result!r:.120}"
            )
        observation, reward, terminated, truncated, info = result
        return Outcome(observation, float(reward), bool(terminated), bool(truncated), info)

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"EnvExecutor({self.env!r})"
