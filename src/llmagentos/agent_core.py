"""The Agent's lean ``act()`` and ``step()``: the state they keep and the two methods.

:class:`PyAgentCore` is the reference. ``llmagentos._speedups`` (C, built with the
package when a compiler is there) holds the same class compiled, and :data:`AgentCore`
is that one when it imports: a trivial step then costs less than an object whose
act/step only forward to the modules (bench ``step_overhead``). Set
``LLMAGENTOS_PURE_PYTHON=1`` to use the Python class.

Both take the lean paths only for seed-style modules when nothing is measured or
traced (see ``Agent._choose_paths``) and hand every other case, every error and every
check that fails to the Agent's methods: ``_act_slow``, ``_step_slow``,
``_seed_result``, ``_fail`` and ``_notify``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from llmagentos.types import Action, Decision, Features, Observation, StepRecord

    Acted = tuple[Observation, Features, Action, Decision | None]

__all__ = ["CORE_FIELDS", "SPEEDUPS", "AgentCore", "PyAgentCore"]

CORE_FIELDS = (
    "_lean_act", "_lean_step", "_acted", "_stepped", "_returned", "_training",
    "listeners", "step_index", "episode_return",
)  # fmt: skip
"""The attributes the core keeps: its ``__slots__`` (the compiled core's too, by name)."""


class PyAgentCore:
    """The lean act() and step() in Python (the compiled core does the same)."""

    __slots__ = CORE_FIELDS

    _lean_act: tuple[Callable[[Observation], Features], Callable[[Features], Action]] | None
    _lean_step: (
        tuple[Callable[[Action], tuple[Observation, float]], Callable[[Observation, float], Any]]
        | None
    )
    _acted: Acted
    _stepped: Acted
    _returned: tuple[Observation, float]
    _training: bool
    listeners: list[Callable[[StepRecord], None]]
    step_index: int
    episode_return: float

    def act(self, observation: Observation) -> Action:
        """Perceive ``observation`` and plan: return the action to take."""
        lean = self._lean_act
        if lean is None:
            return self._act_slow(observation)
        perceive, plan = lean
        try:
            features = perceive(observation)
        except Exception as err:
            self._fail("perception", err, observation)
        try:
            action = plan(features)
        except Exception as err:
            self._fail("planning", err, features)
        self._acted = (observation, features, action, None)
        return action

    def step(self, action: Action) -> tuple[Observation, float]:
        """Execute ``action`` and learn from it; return ``(observation, reward)``.

        The rest of the transition (``terminated``, ``truncated``, ``info``) is in
        :attr:`last_record` and :attr:`done`.
        """
        lean = self._lean_step
        acted = self._acted
        if lean is None or acted is self._stepped or acted[2] is not action:
            return self._step_slow(action)
        # Right after the act() that planned this action. The module's own tuple is
        # returned when it is an (observation, float).
        execute, learn = lean
        try:
            result = execute(action)
        except Exception as err:
            self._fail("execution", err, action)
        try:
            observation, reward = result
        except Exception:
            observation, reward = result = self._seed_result(result)
        if type(result) is not tuple or type(reward) is not float:
            observation, reward = result = self._seed_result(result)
        if self._training:
            try:
                learn(observation, reward)
            except Exception as err:
                self._fail("learning", err, reward)
        self._stepped = acted
        self._returned = result
        self.step_index += 1
        self.episode_return += reward
        if self.listeners:
            self._notify()
        return result

    # The Agent's own (agent.py).
    def _act_slow(self, observation: Observation) -> Action:
        raise NotImplementedError

    def _step_slow(self, action: Action) -> tuple[Observation, float]:
        raise NotImplementedError

    def _seed_result(self, result: Any) -> tuple[Observation, float]:
        raise NotImplementedError

    def _fail(self, module: str, err: Exception, value: Any) -> NoReturn:
        raise NotImplementedError

    def _notify(self) -> None:
        raise NotImplementedError


def _compiled() -> type[PyAgentCore] | None:
    if os.environ.get("LLMAGENTOS_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        core: type[PyAgentCore] = importlib.import_module("llmagentos._speedups").AgentCore
    except ImportError:
        return None
    return core


_core = _compiled()
SPEEDUPS = _core is not None
"""Whether :data:`AgentCore` is the compiled core."""
AgentCore: type[PyAgentCore] = PyAgentCore if _core is None else _core
