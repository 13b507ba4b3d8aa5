"""The Agent: four modules in a loop, ``reset -> act -> step`` (seed, sections 3.1 and 5.2).

``act`` runs perception then planning; ``step`` runs execution then learning. The
agent keeps the bookkeeping the modules should not have to: the episode and step
counters, the features of the observation it acted on (so perception runs once per
observation), the full transition for learners that want it, and a
:class:`~llmagentos.types.StepRecord` of every step for tracing.

The async twins (``areset``, ``aact``, ``astep``, ``arun_episode``, ``arun``) await the
modules' async methods, so thousands of agents can share one event loop and a module
can live behind a network call with no change here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from llmagentos.exceptions import ConfigError, ModuleError, ModuleOutputError
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.perception import PerceptionModule
from llmagentos.modules.planning import PlanningModule
from llmagentos.types import (
    Action,
    Decision,
    EpisodeResult,
    Features,
    Observation,
    Outcome,
    RunResult,
    StepRecord,
    Transition,
)

__all__ = ["Agent", "StepListener"]

StepListener = Callable[[StepRecord], None]
EpisodeListener = Callable[[EpisodeResult], None]

_perf = time.perf_counter
_NOTHING: Any = object()


def _checked(module: Any, cls: type, field: str) -> Any:
    if not isinstance(module, cls):
        got = f"{type(module).__name__}: {module!r:.60}"
        raise ConfigError(field, f"expected a {cls.__name__} instance, got {got}")
    return module


def _default_planning(execution: ExecutionModule) -> PlanningModule:
    """Random actions when the environment's action space allows it; else a bare planner."""
    space = getattr(execution.env, "action_space", None)
    if space is not None and type(space).__name__ == "Discrete":
        from llmagentos.rl.selectors import RandomSelector

        return PlanningModule(RandomSelector(int(space.n)))
    return PlanningModule()


class Agent:
    """An LLM agent made of four replaceable modules.

    Args:
        perception_module: observations -> features (default: identity).
        planning_module: features -> action (default: random over a discrete action space).
        execution_module: action -> (observation, reward) (default: no environment).
        learning_module: learns from (observation, reward) (default: learns nothing).
        name: the agent's name in traces and logs.
        on_step: listeners called with the :class:`StepRecord` of every step.
        record_timings: measure the seconds each module takes per step (in the record).

    Example::

        agent = Agent(execution_module=ExecutionModule("Taxi-v4"))
        observation = agent.reset(seed=0)
        action = agent.act(observation)
        observation, reward = agent.step(action)
    """

    def __init__(
        self,
        perception_module: PerceptionModule | None = None,
        planning_module: PlanningModule | None = None,
        execution_module: ExecutionModule | None = None,
        learning_module: LearningModule | None = None,
        *,
        name: str = "agent",
        on_step: Iterable[StepListener] = (),
        record_timings: bool = False,
    ) -> None:
        self.perception_module: PerceptionModule = (
            PerceptionModule()
            if perception_module is None
            else _checked(perception_module, PerceptionModule, "perception_module")
        )
        self.execution_module: ExecutionModule = (
            ExecutionModule()
            if execution_module is None
            else _checked(execution_module, ExecutionModule, "execution_module")
        )
        self.planning_module: PlanningModule = (
            _default_planning(self.execution_module)
            if planning_module is None
            else _checked(planning_module, PlanningModule, "planning_module")
        )
        self.learning_module: LearningModule = (
            LearningModule()
            if learning_module is None
            else _checked(learning_module, LearningModule, "learning_module")
        )
        self.name = name
        self.listeners: list[StepListener] = list(on_step)
        self.record_timings = record_timings
        self.training = True
        self.episode = -1
        self.step_index = 0
        self.episode_return = 0.0
        self.terminated = False
        self.truncated = False
        self.total_steps = 0
        # Learners that only override the seed's learn() need no transition; skip building it.
        learner = self.learning_module._overrides
        self._seed_learner = bool(learner & {"learn", "alearn"}) and not (
            learner & {"update", "aupdate"}
        )
        self._observation: Observation = None
        self._acted: tuple[Observation, Features, Decision] | None = None
        self._next: tuple[Observation, Features] | None = None
        self._last: tuple[Any, ...] | None = None
        self._act_timings = (0.0, 0.0)
        self._timings: dict[str, float] | None = None

    # -- modules and modes ----------------------------------------------------------------

    @property
    def modules(self) -> tuple[PerceptionModule, PlanningModule, ExecutionModule, LearningModule]:
        return (
            self.perception_module,
            self.planning_module,
            self.execution_module,
            self.learning_module,
        )

    @property
    def done(self) -> bool:
        """Whether the current episode has ended (terminated or truncated)."""
        return self.terminated or self.truncated

    def train(self, mode: bool = True) -> Agent:
        """Switch training on (exploration and learning) or off (greedy, no learning)."""
        self.training = mode
        for module in self.modules:
            module.train(mode)
        return self

    def eval(self) -> Agent:
        """Shorthand for ``train(False)``."""
        return self.train(False)

    def close(self) -> None:
        """Close every module (environments, connections)."""
        for module in self.modules:
            module.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- error handling -------------------------------------------------------------------

    def _fail(self, module: str, err: Exception, value: Any, *, in_step: bool = True) -> NoReturn:
        """Re-raise ``err`` as a ModuleError naming the module, the step and the value."""
        step = self.step_index if in_step else None
        if isinstance(err, ModuleError):
            if err.step is None:
                err.step = step
            raise err
        raise ModuleError(
            module, f"{type(err).__name__}: {err} (input {value!r:.80})", step=step, value=value
        ) from err

    # -- the loop -------------------------------------------------------------------------

    def _begin_episode(self, observation: Observation) -> Observation:
        self.episode += 1
        self.step_index = 0
        self.episode_return = 0.0
        self.terminated = self.truncated = False
        self._observation = observation
        self._acted = self._next = self._last = None
        return observation

    def reset(self, *, seed: int | None = None) -> Observation:
        """Start a new episode: reset every module and return the first observation.

        Args:
            seed: reseeds the environment and every module's randomness.
        """
        for module in (self.perception_module, self.planning_module, self.learning_module):
            try:
                module.reset(seed=seed)
            except Exception as err:
                self._fail(module.kind, err, seed, in_step=False)
        try:
            observation = self.execution_module.reset(seed=seed)
        except Exception as err:
            self._fail("execution", err, seed, in_step=False)
        return self._begin_episode(observation)

    def _features_for(self, observation: Observation) -> Features:
        cached = self._next
        if cached is not None and cached[0] is observation:
            return cached[1]
        try:
            return self.perception_module.perceive(observation)
        except Exception as err:
            self._fail("perception", err, observation)

    def act(self, observation: Observation) -> Action:
        """Perceive ``observation`` and plan: return the action to take."""
        timings = self.record_timings
        start = _perf() if timings else 0.0
        features = self._features_for(observation)
        middle = _perf() if timings else 0.0
        try:
            decision = self.planning_module.decide(features)
        except Exception as err:
            self._fail("planning", err, features)
        if type(decision) is not Decision:
            self._fail_output("planning", "decide() must return a Decision", decision)
        self._acted = (observation, features, decision)
        if timings:
            self._act_timings = (middle - start, _perf() - middle)
        return decision.action

    def _fail_output(self, module: str, message: str, value: Any) -> NoReturn:
        raise ModuleOutputError(
            module, f"{message}, got {value!r:.80}", step=self.step_index, value=value
        )

    def _check_outcome(self, outcome: Any) -> Outcome:
        if type(outcome) is not Outcome:
            if isinstance(outcome, Outcome):
                return outcome
            self._fail_output("execution", "perform() must return an Outcome", outcome)
        reward = outcome.reward
        if type(reward) is not float:
            try:
                outcome.reward = float(reward)
            except (TypeError, ValueError):
                self._fail_output("execution", "the reward must be a number", reward)
        return outcome

    def _before_step(self, action: Action) -> tuple[Observation, Features, Decision]:
        if self.episode < 0:
            raise ModuleError("execution", "step() before reset(): call agent.reset() first")
        if self.terminated or self.truncated:
            state = "terminated" if self.terminated else "truncated"
            raise ModuleError(
                "execution",
                f"the episode has ended ({state} after {self.step_index} steps); "
                "call agent.reset() before stepping again",
                step=self.step_index,
                value=action,
            )
        acted = self._acted
        if acted is not None and acted[2].action is action:
            return acted
        # step() without act(): perceive the current observation for the transition.
        observation = self._observation
        return observation, self._features_for(observation), Decision(action)

    def step(self, action: Action) -> tuple[Observation, float]:
        """Execute ``action`` and learn from it; return ``(observation, reward)``.

        The rest of the transition (``terminated``, ``truncated``, ``info``) is in
        :attr:`last_record` and :attr:`done`.
        """
        observation, features, decision = self._before_step(action)
        timings = self.record_timings
        start = _perf() if timings else 0.0
        try:
            outcome = self.execution_module.perform(action)
        except Exception as err:
            self._fail("execution", err, action)
        outcome = self._check_outcome(outcome)
        middle = _perf() if timings else 0.0
        report = None
        learner = self.learning_module
        if self.training and (learner.optimizer is not None or learner._overrides):
            if self._seed_learner:
                try:
                    self.learning_module.learn(outcome.observation, outcome.reward)
                except Exception as err:
                    self._fail("learning", err, outcome.reward)
            else:
                transition = self._transition(observation, features, action, outcome)
                try:
                    report = self.learning_module.update(transition)
                except Exception as err:
                    self._fail("learning", err, transition.to_dict())
        end = _perf() if timings else 0.0
        self._end_step(observation, features, decision, outcome, report)
        if timings:
            self._store_timings(middle - start, end - middle)
        if self.listeners:
            self._notify()
        return outcome.observation, outcome.reward

    def _transition(
        self, observation: Observation, features: Features, action: Action, outcome: Outcome
    ) -> Transition:
        next_observation = outcome.observation
        next_features = self._features_for(next_observation)
        self._next = (next_observation, next_features)
        return Transition(
            observation,
            features,
            action,
            outcome.reward,
            next_observation,
            next_features,
            outcome.terminated,
            outcome.truncated,
            outcome.info,
        )

    def _end_step(
        self,
        observation: Observation,
        features: Features,
        decision: Decision,
        outcome: Outcome,
        report: dict[str, Any] | None,
    ) -> None:
        self._last = (
            self.step_index,
            observation,
            features,
            decision,
            outcome,
            report,
            self.training,
        )
        self.step_index += 1
        self.total_steps += 1
        self.episode_return += outcome.reward
        self.terminated = outcome.terminated
        self.truncated = outcome.truncated
        self._observation = outcome.observation
        self._acted = None

    def _store_timings(self, execute: float, learn: float) -> None:
        perceive, plan = self._act_timings
        self._timings = {"perceive": perceive, "plan": plan, "execute": execute, "learn": learn}
        self._act_timings = (0.0, 0.0)

    def _notify(self) -> None:
        record = self.last_record
        if record is not None:
            for listener in self.listeners:
                listener(record)

    @property
    def last_record(self) -> StepRecord | None:
        """The record of the most recent step of the current episode, or ``None``."""
        last = self._last
        if last is None:
            return None
        step, observation, features, decision, outcome, report, training = last
        return StepRecord(
            episode=self.episode,
            step=step,
            observation=observation,
            features=features,
            action=decision.action,
            reason=decision.reason,
            scores=decision.scores,
            reward=outcome.reward,
            next_observation=outcome.observation,
            terminated=outcome.terminated,
            truncated=outcome.truncated,
            info=outcome.info,
            learning=report,
            timings=self._timings if self.record_timings else None,
            training=training,
        )

    # -- whole episodes -------------------------------------------------------------------

    def _episode_result(self, seed: int | None, started: float) -> EpisodeResult:
        return EpisodeResult(
            episode=self.episode,
            total_reward=self.episode_return,
            length=self.step_index,
            terminated=self.terminated,
            truncated=self.truncated,
            seed=seed,
            seconds=_perf() - started,
            training=self.training,
        )

    def run_episode(
        self, *, seed: int | None = None, max_steps: int | None = None
    ) -> EpisodeResult:
        """Run one episode to its end (or ``max_steps``, which then counts as truncation)."""
        started = _perf()
        observation = self.reset(seed=seed)
        act, step = self.act, self.step
        while not (self.terminated or self.truncated):
            if max_steps is not None and self.step_index >= max_steps:
                self.truncated = True
                break
            observation, _ = step(act(observation))
        return self._episode_result(seed, started)

    def run(
        self,
        episodes: int,
        *,
        seed: int | None = None,
        max_steps: int | None = None,
        train: bool | None = None,
        on_episode: EpisodeListener | None = None,
    ) -> RunResult:
        """Run ``episodes`` episodes; return their results.

        Args:
            episodes: how many episodes.
            seed: seeds the first episode's reset; later episodes continue the streams
                (Gymnasium's convention), so a seeded run is reproducible as a whole.
            max_steps: cut each episode after this many steps.
            train: ``True`` to learn, ``False`` to evaluate greedily; ``None`` keeps the
                current mode. The previous mode is restored afterwards.
            on_episode: called with each episode's result as it finishes.
        """
        if episodes < 0:
            raise ConfigError("episodes", f"must be >= 0 (got {episodes})")
        previous = self.training
        if train is not None:
            self.train(train)
        result = RunResult()
        try:
            for index in range(episodes):
                episode = self.run_episode(seed=seed if index == 0 else None, max_steps=max_steps)
                result.episodes.append(episode)
                if on_episode is not None:
                    on_episode(episode)
        finally:
            if train is not None:
                self.train(previous)
        return result

    # -- async twins ----------------------------------------------------------------------

    async def areset(self, *, seed: int | None = None) -> Observation:
        """Async twin of :meth:`reset`."""
        for module in (self.perception_module, self.planning_module, self.learning_module):
            try:
                await module.areset(seed=seed)
            except Exception as err:
                self._fail(module.kind, err, seed, in_step=False)
        try:
            observation = await self.execution_module.areset(seed=seed)
        except Exception as err:
            self._fail("execution", err, seed, in_step=False)
        return self._begin_episode(observation)

    async def _afeatures_for(self, observation: Observation) -> Features:
        cached = self._next
        if cached is not None and cached[0] is observation:
            return cached[1]
        try:
            return await self.perception_module.aperceive(observation)
        except Exception as err:
            self._fail("perception", err, observation)

    async def aact(self, observation: Observation) -> Action:
        """Async twin of :meth:`act`."""
        timings = self.record_timings
        start = _perf() if timings else 0.0
        features = await self._afeatures_for(observation)
        middle = _perf() if timings else 0.0
        try:
            decision = await self.planning_module.adecide(features)
        except Exception as err:
            self._fail("planning", err, features)
        if type(decision) is not Decision:
            self._fail_output("planning", "adecide() must return a Decision", decision)
        self._acted = (observation, features, decision)
        if timings:
            self._act_timings = (middle - start, _perf() - middle)
        return decision.action

    async def astep(self, action: Action) -> tuple[Observation, float]:
        """Async twin of :meth:`step`."""
        acted = self._acted
        if acted is not None and acted[2].action is action and not self.done and self.episode >= 0:
            observation, features, decision = acted
        elif self.episode >= 0 and not self.done:
            observation = self._observation
            features = await self._afeatures_for(observation)
            decision = Decision(action)
        else:
            observation, features, decision = self._before_step(action)  # raises
        timings = self.record_timings
        start = _perf() if timings else 0.0
        try:
            outcome = await self.execution_module.aperform(action)
        except Exception as err:
            self._fail("execution", err, action)
        outcome = self._check_outcome(outcome)
        middle = _perf() if timings else 0.0
        report = None
        learner = self.learning_module
        if self.training and (learner.optimizer is not None or learner._overrides):
            if self._seed_learner:
                try:
                    await self.learning_module.alearn(outcome.observation, outcome.reward)
                except Exception as err:
                    self._fail("learning", err, outcome.reward)
            else:
                next_features = await self._afeatures_for(outcome.observation)
                self._next = (outcome.observation, next_features)
                transition = self._transition(observation, features, action, outcome)
                try:
                    report = await self.learning_module.aupdate(transition)
                except Exception as err:
                    self._fail("learning", err, transition.to_dict())
        end = _perf() if timings else 0.0
        self._end_step(observation, features, decision, outcome, report)
        if timings:
            self._store_timings(middle - start, end - middle)
        if self.listeners:
            self._notify()
        return outcome.observation, outcome.reward

    async def arun_episode(
        self, *, seed: int | None = None, max_steps: int | None = None
    ) -> EpisodeResult:
        """Async twin of :meth:`run_episode`."""
        started = _perf()
        observation = await self.areset(seed=seed)
        while not (self.terminated or self.truncated):
            if max_steps is not None and self.step_index >= max_steps:
                self.truncated = True
                break
            observation, _ = await self.astep(await self.aact(observation))
        return self._episode_result(seed, started)

    async def arun(
        self,
        episodes: int,
        *,
        seed: int | None = None,
        max_steps: int | None = None,
        train: bool | None = None,
        on_episode: EpisodeListener | None = None,
    ) -> RunResult:
        """Async twin of :meth:`run`."""
        if episodes < 0:
            raise ConfigError("episodes", f"must be >= 0 (got {episodes})")
        previous = self.training
        if train is not None:
            self.train(train)
        result = RunResult()
        try:
            for index in range(episodes):
                episode = await self.arun_episode(
                    seed=seed if index == 0 else None, max_steps=max_steps
                )
                result.episodes.append(episode)
                if on_episode is not None:
                    on_episode(episode)
        finally:
            if train is not None:
                self.train(previous)
        return result

    def __repr__(self) -> str:
        modules = ", ".join(repr(m) for m in self.modules)
        return f"Agent(name={self.name!r}, {modules})"
