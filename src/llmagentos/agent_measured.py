"""act() and step() timed per phase (``record_timings``) and traced (a traced episode).

The Agent takes these paths only when one of the two is on; with neither, its act()
and step() open no span and read no clock (see :meth:`Agent._choose_paths`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from llmagentos.telemetry.agent_spans import note_decision
from llmagentos.telemetry.spans import span
from llmagentos.types import Action, Features, Observation, Outcome

if TYPE_CHECKING:
    from llmagentos.agent import Acted

__all__ = ["MeasuredLoop"]

_perf = time.perf_counter


class MeasuredLoop:
    """The measured half of :class:`~llmagentos.agent.Agent`'s act and step (mixed in)."""

    if TYPE_CHECKING:  # provided by the Agent
        _traced: bool
        _timings: dict[str, float]
        _acted: Acted

        def _features_for(self, observation: Observation) -> Features: ...
        def _choose(self, observation: Observation, features: Features) -> Action: ...
        def _execute(self, action: Action) -> tuple[Observation, float, Outcome | None]: ...
        def _learns(self) -> bool: ...
        def _learn(
            self,
            acted: Acted,
            observation: Observation,
            reward: float,
            outcome: Outcome | None,
        ) -> dict[str, Any] | None: ...

    def _act_measured(self, observation: Observation) -> Action:
        """act() timing each phase, in a span each when the episode is traced."""
        start = _perf()
        if not self._traced:
            features = self._features_for(observation)
            middle = _perf()
            action = self._choose(observation, features)
        else:
            with span("perceive"):
                features = self._features_for(observation)
            middle = _perf()
            with span("plan") as planned:
                action = self._choose(observation, features)
                note_decision(planned, self._acted)
        self._timings = {"perceive": middle - start, "plan": _perf() - middle}
        return action

    def _step_measured(
        self, acted: Acted, action: Action
    ) -> tuple[Observation, float, Outcome | None, dict[str, Any] | None]:
        """Execution and learning timed, in a span each when the episode is traced."""
        traced = self._traced
        start = _perf()
        if traced:
            with span("execute"):
                observation, reward, outcome = self._execute(action)
        else:
            observation, reward, outcome = self._execute(action)
        middle = _perf()
        report = None
        if self._learns():
            if traced:
                with span("learn"):
                    report = self._learn(acted, observation, reward, outcome)
            else:
                report = self._learn(acted, observation, reward, outcome)
        self._timings.update(execute=middle - start, learn=_perf() - middle)
        return observation, reward, outcome, report
