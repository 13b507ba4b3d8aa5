"""Make environments by id: llmagentos' own registry first, then Gymnasium's."""

from __future__ import annotations

import difflib
from typing import Any

from llmagentos.exceptions import ConfigError, EnvError, RegistryError
from llmagentos.registration import registry

__all__ = ["env_ids", "make_env"]


def _gymnasium_ids() -> list[str]:
    import gymnasium

    return sorted(gymnasium.envs.registry)


def env_ids() -> dict[str, list[str]]:
    """Every environment id that :func:`make_env` accepts, by source."""
    return {"llmagentos": registry.names("env"), "gymnasium": _gymnasium_ids()}


def make_env(env: Any, *, max_episode_steps: int | None = None, **kwargs: Any) -> Any:
    """Return an environment for ``env``: an id string, or an environment object as it is.

    Args:
        env: a registered id (``"Taxi-v4"``, ``"CliffWalking-v1"``, an llmagentos text
            environment) or an object with Gymnasium's ``reset``/``step``.
        max_episode_steps: cut episodes after this many steps (a ``TimeLimit``).
        **kwargs: passed to the environment's constructor.

    Raises:
        RegistryError: unknown id; the message lists the close matches.
        EnvError: the object is not an environment, or Gymnasium refused the arguments.
    """
    if not isinstance(env, str):
        if kwargs or max_episode_steps is not None:
            raise ConfigError("env", "keyword arguments apply only when env is an id string")
        if not (callable(getattr(env, "reset", None)) and callable(getattr(env, "step", None))):
            raise EnvError(f"{env!r} is not an environment: it needs reset() and step()")
        return env
    if env in registry.names("env"):
        made = registry.make("env", env, **kwargs)
        if max_episode_steps is not None:
            from gymnasium.wrappers import TimeLimit

            made = TimeLimit(made, max_episode_steps=max_episode_steps)
        return made
    import gymnasium

    known = _gymnasium_ids()
    if env not in known:
        pool = registry.names("env") + known
        raise RegistryError("environment", env, difflib.get_close_matches(env, pool, n=5))
    try:
        return gymnasium.make(env, max_episode_steps=max_episode_steps, **kwargs)
    except Exception as err:  # constructors raise anything (KeyError for a bad map name)
        raise EnvError(f"cannot make {env!r}: {err}") from err
