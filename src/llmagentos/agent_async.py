"""The Agent's async twins: ``areset``, ``aact`` and ``astep``.

They await the modules' async methods, so thousands of agents can share one event loop
and a module can live behind a network call with no change to the loop. Modules with
no async override take the sync path (:meth:`Agent.act`, :meth:`Agent.step`) and skip
the coroutines. ``arun_episode`` and ``arun`` are in :mod:`~llmagentos.episodes`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NoReturn

from llmagentos.exceptions import ModuleError
from llmagentos.telemetry.agent_spans import note_decision
from llmagentos.telemetry.spans import span
from llmagentos.types import Action, Decision, Features, Observation, Outcome, Transition

if TYPE_CHECKING:
    from llmagentos.agent import Acted
    from llmagentos.modules.execution import ExecutionModule
    from llmagentos.modules.learning import LearningModule
    from llmagentos.modules.perception import PerceptionModule
    from llmagentos.modules.planning import PlanningModule

__all__ = ["AsyncLoop"]

_perf = time.perf_counter


class AsyncLoop:
    """The async half of :class:`~llmagentos.agent.Agent` (mixed into it)."""

    if TYPE_CHECKING:  # provided by the Agent
        _modules: tuple[PerceptionModule, PlanningModule, ExecutionModule, LearningModule]
        _next: tuple[Observation, Features] | None
        _acted: Acted
        _stepped: Acted
        _returned: tuple[Observation, float]
        _async_act: bool
        _async_step: bool
        _blocked: bool
        _record_timings: bool
        _timings: dict[str, float]
        _learn_only: Any

        def act(self, observation: Observation) -> Action: ...
        def step(self, action: Action) -> tuple[Observation, float]: ...
        def _fail(
            self, module: str, err: Exception, value: Any, *, in_step: bool = True
        ) -> NoReturn: ...
        def _fail_output(self, module: str, message: str, value: Any) -> NoReturn: ...
        def _refuse_step(self, action: Action) -> NoReturn: ...
        def _reward(self, reward: Any) -> float: ...
        def _learns(self) -> bool: ...
        def _begin_episode(self, observation: Observation) -> Observation: ...
        def _transition(
            self,
            acted: Acted,
            observation: Observation,
            reward: float,
            outcome: Outcome | None,
            next_features: Features,
        ) -> Transition: ...
        def _finish_step(
            self,
            acted: Acted,
            observation: Observation,
            reward: float,
            outcome: Outcome | None,
            report: dict[str, Any] | None,
        ) -> tuple[Observation, float]: ...

    async def areset(self, *, seed: int | None = None) -> Observation:
        """Async twin of :meth:`reset`."""
        perception, planning, execution, learning = self._modules
        for module in (perception, planning, learning):
            try:
                await module.areset(seed=seed)
            except Exception as err:
                self._fail(module.kind, err, seed, in_step=False)
        try:
            observation = await execution.areset(seed=seed)
        except Exception as err:
            self._fail("execution", err, seed, in_step=False)
        return self._begin_episode(observation)

    async def _afeatures_for(self, observation: Observation) -> Features:
        cached = self._next
        if cached is not None and cached[0] is observation:
            return cached[1]
        try:
            return await self._modules[0].aperceive(observation)
        except Exception as err:
            self._fail("perception", err, observation)

    async def aact(self, observation: Observation) -> Action:
        """Async twin of :meth:`act`."""
        if not self._async_act:
            return self.act(observation)
        start = _perf()
        with span("perceive"):
            features = await self._afeatures_for(observation)
        middle = _perf()
        with span("plan") as planned:
            try:
                decision = await self._modules[1].adecide(features)
            except Exception as err:
                self._fail("planning", err, features)
            if not isinstance(decision, Decision):
                self._fail_output("planning", "adecide() must return a Decision", decision)
            self._acted = (observation, features, decision.action, decision)
            if planned is not None:
                note_decision(planned, self._acted)
        if self._record_timings:
            self._timings = {"perceive": middle - start, "plan": _perf() - middle}
        return decision.action

    async def astep(self, action: Action) -> tuple[Observation, float]:
        """Async twin of :meth:`step`."""
        if not self._async_step:
            return self.step(action)
        if self._blocked:
            self._refuse_step(action)
        acted = self._acted
        if acted is self._stepped or acted[2] is not action:
            # astep() without aact(): the transition starts from the current observation.
            observation = self._returned[0]
            acted = (observation, await self._afeatures_for(observation), action, None)
            self._acted = acted
        start = _perf()
        with span("execute"):
            try:
                outcome = await self._modules[2].aperform(action)
            except Exception as err:
                self._fail("execution", err, action)
        if not isinstance(outcome, Outcome):
            self._fail_output("execution", "aperform() must return an Outcome", outcome)
        if type(outcome.reward) is not float:
            outcome.reward = self._reward(outcome.reward)
        observation, reward = outcome.observation, outcome.reward
        middle = _perf()
        report = None
        if self._learns():
            with span("learn"):
                report = await self._alearn(acted, observation, reward, outcome)
        if self._record_timings:
            self._timings.update(execute=middle - start, learn=_perf() - middle)
        return self._finish_step(acted, observation, reward, outcome, report)

    async def _alearn(
        self, acted: Acted, observation: Observation, reward: float, outcome: Outcome
    ) -> dict[str, Any] | None:
        learning = self._modules[3]
        try:
            if self._learn_only is not None:
                await learning.alearn(observation, reward)
                return None
            next_features = await self._afeatures_for(observation)
            transition = self._transition(acted, observation, reward, outcome, next_features)
            return await learning.aupdate(transition)
        except ModuleError:
            raise
        except Exception as err:
            self._fail("learning", err, reward)
