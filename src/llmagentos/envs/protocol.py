"""The environment protocol: Gymnasium's ``reset``/``step`` contract, structurally typed."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Env"]


@runtime_checkable
class Env(Protocol):
    """Anything shaped like a ``gymnasium.Env``.

    ``reset(seed=, options=)`` returns ``(observation, info)``; ``step(action)`` returns
    ``(observation, reward, terminated, truncated, info)``. ``action_space`` and
    ``observation_space`` are Gymnasium spaces when present (the tabular builders need
    ``Discrete`` ones).
    """

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]: ...

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]: ...
