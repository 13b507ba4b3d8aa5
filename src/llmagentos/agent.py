"""The Agent: four modules in a loop, ``reset -> act -> step`` (seed, sections 3.1 and 5.2).

``act`` runs perception then planning; ``step`` runs execution then learning. The
agent keeps the bookkeeping the modules should not have to: the episode and step
counters, the features of the observation it acted on (so perception runs once per
observation), the full transition for learners that want it, and a
:class:`~llmagentos.types.StepRecord` of every step for tracing.

The async twins (``areset``, ``aact``, ``astep``, ``arun_episode``, ``arun``) are in
:mod:`~llmagentos.agent_async`; act and step timed and traced in
:mod:`~llmagentos.agent_measured`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from llmagentos.agent_async import AsyncLoop
from llmagentos.agent_measured import MeasuredLoop
from llmagentos.episodes import EpisodeRunner
from llmagentos.exceptions import (
    BudgetExceeded,
    ConfigError,
    JournalError,
    ModuleError,
    ModuleOutputError,
    RunPaused,
)
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.perception import PerceptionModule
from llmagentos.modules.planning import PlanningModule
from llmagentos.types import (
    Action,
    Decision,
    Features,
    Observation,
    Outcome,
    StepRecord,
    Transition,
)

if TYPE_CHECKING:
    from llmagentos.agent_core import PyAgentCore as AgentCore
else:  # the compiled core when it is there
    from llmagentos.agent_core import AgentCore

__all__ = ["Agent", "StepListener"]

StepListener = Callable[[StepRecord], None]
Acted = tuple[Observation, Features, Action, Decision | None]
"""An act: the observation, its features, the action and the planner's decision."""

_PLAN = frozenset({"plan"})
_EXECUTE = frozenset({"execute"})
_LEARN = frozenset({"learn", "alearn"})
_UPDATE = frozenset({"update", "aupdate"})
# A durable run's journal errors (a replay that differs, a corrupt row) stop the run as
# themselves too: the caller must see ResumeMismatch, not a module failure.
_PASS_THROUGH = (RunPaused, BudgetExceeded, JournalError)
# Before the first act of an episode: the latest act and the latest step's act both.
_NOT_ACTED: Acted = (None, None, None, None)


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


class Agent(MeasuredLoop, AsyncLoop, EpisodeRunner, AgentCore):
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

    # Slots: past 30 attributes CPython stops keeping an instance's attributes inline,
    # and every read on the hot path would go through a dict. (The mixins give a
    # __dict__ still, so other attributes can be set.) AgentCore keeps the lean
    # paths' state: act() and step() are its own (llmagentos.agent_core).
    __slots__ = (
        "_async_act", "_async_step", "_blocked", "_decide", "_execute_only",
        "_learn_only", "_mode_before", "_mode_step", "_modules", "_next", "_outcome",
        "_past_steps", "_perceive", "_perform", "_plan_only", "_record_timings",
        "_report", "_timings", "_traced", "_update", "episode", "name", "terminated",
        "truncated",
    )  # fmt: skip

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
        perception: PerceptionModule = (
            PerceptionModule()
            if perception_module is None
            else _checked(perception_module, PerceptionModule, "perception_module")
        )
        execution: ExecutionModule = (
            ExecutionModule()
            if execution_module is None
            else _checked(execution_module, ExecutionModule, "execution_module")
        )
        planning: PlanningModule = (
            _default_planning(execution)
            if planning_module is None
            else _checked(planning_module, PlanningModule, "planning_module")
        )
        learning: LearningModule = (
            LearningModule()
            if learning_module is None
            else _checked(learning_module, LearningModule, "learning_module")
        )
        self._modules = (perception, planning, execution, learning)
        self.name = name
        self.listeners: list[StepListener] = list(on_step)
        self._record_timings = record_timings
        self._traced = False  # inside an episode that telemetry traces
        self._training = True
        self.episode = -1
        self.step_index = 0
        self.episode_return = 0.0
        self.terminated = False
        self.truncated = False
        self._past_steps = 0
        self._blocked = True  # no stepping before reset() or after the episode ends
        # The latest act: (observation, features, action, decision).
        self._acted: Acted = _NOT_ACTED
        # The latest step of the episode: the act it carried out (a step whose act is
        # this one is a step without act()), what it returned (observation, reward;
        # after reset the first observation), the execution's outcome and the learner's
        # report (always None from seed-style execute() and learn(): the lean step()
        # leaves them).
        self._stepped: Acted = _NOT_ACTED
        self._returned: tuple[Observation, float] = (None, 0.0)
        self._outcome: Outcome | None = None
        self._report: dict[str, Any] | None = None
        # The step the latest mode change came after, and its mode (see ``training``).
        self._mode_step: Acted = _NOT_ACTED
        self._mode_before = True
        self._next: tuple[Observation, Features] | None = None
        self._timings: dict[str, float] = {}
        # Bound methods chosen once, so a step makes no more calls than it must: a module
        # that overrides nothing runs its components directly; a planner or executor that
        # overrides only the seed's method is called directly; learners that only
        # override learn() get (observation, reward) and no transition is built.
        overrides = perception._overrides
        self._perceive = perception.perceive if overrides else perception._run_components
        overrides = planning._overrides
        self._decide = planning.decide if overrides else planning._run_components
        self._plan_only = planning.plan if overrides == _PLAN else None
        overrides = execution._overrides
        self._perform = execution.perform if overrides else execution._run_components
        self._execute_only = execution.execute if overrides == _EXECUTE else None
        overrides = learning._overrides
        self._update = learning.update if overrides else learning._run_components
        seed_learner = bool(overrides & _LEARN) and not overrides & _UPDATE
        self._learn_only = learning.learn if seed_learner else None
        # Modules with no async override would only call their sync methods from their
        # async twins: the async loop then takes the sync path and skips the coroutines.
        self._async_act = perception._awaits or planning._awaits
        self._async_step = execution._awaits or learning._awaits
        self._choose_paths()

    # -- modules and modes ----------------------------------------------------------------

    @property
    def record_timings(self) -> bool:
        """Measure the seconds each module takes per step (in the record)."""
        return self._record_timings

    @record_timings.setter
    def record_timings(self, value: bool) -> None:
        self._record_timings = bool(value)
        self._choose_paths()

    @property
    def training(self) -> bool:
        """Training mode (exploration and learning), or evaluation (greedy, no learning)."""
        return self._training

    @training.setter
    def training(self, mode: bool) -> None:
        stepped = self._stepped
        if self._mode_step is not stepped:
            # The first change since the latest step: the step's record keeps its mode,
            # so no step has to store it.
            self._mode_step, self._mode_before = stepped, self._training
        self._training = mode

    def _trace_phases(self, on: bool) -> None:
        """Open a span per phase in act() and step() (for a traced episode), or stop."""
        self._traced = on
        self._choose_paths()

    def _choose_paths(self) -> None:
        """Give act() and step() their lean paths' callables, or None for the full paths.

        The lean paths are for seed-style modules (plan(), execute(), learn()) when
        nothing is measured or traced: they check what the full paths check and keep
        the same record, with fewer calls. Called whenever one of those conditions
        changes (timings, tracing, the episode's start and end), so act() and step()
        read one attribute to choose.
        """
        plain = not (self._record_timings or self._traced)
        # act() must look for cached features when the learner's transitions leave them.
        caches = not self._modules[0].depends_on_learning and self._learn_only is None
        plan, execute, learn = self._plan_only, self._execute_only, self._learn_only
        self._lean_act = (
            (self._perceive, plan) if plain and plan is not None and not caches else None
        )
        self._lean_step = (
            (execute, learn)
            if plain and not self._blocked and execute is not None and learn is not None
            else None
        )

    @property
    def perception_module(self) -> PerceptionModule:
        return self._modules[0]

    @property
    def planning_module(self) -> PlanningModule:
        return self._modules[1]

    @property
    def execution_module(self) -> ExecutionModule:
        return self._modules[2]

    @property
    def learning_module(self) -> LearningModule:
        return self._modules[3]

    @property
    def modules(self) -> tuple[PerceptionModule, PlanningModule, ExecutionModule, LearningModule]:
        """The four modules, in loop order."""
        return self._modules

    @property
    def done(self) -> bool:
        """Whether the current episode has ended (terminated or truncated)."""
        return self.terminated or self.truncated

    @property
    def total_steps(self) -> int:
        """Steps taken since the agent was created, over all episodes."""
        return self._past_steps + self.step_index

    def _learns(self) -> bool:
        learner = self._modules[3]
        return self._training and (learner.optimizer is not None or bool(learner._overrides))

    def train(self, mode: bool = True) -> Agent:
        """Switch training on (exploration and learning) or off (greedy, no learning)."""
        self.training = mode
        for module in self._modules:
            module.train(mode)
        return self

    def eval(self) -> Agent:
        """Shorthand for ``train(False)``."""
        return self.train(False)

    def close(self) -> None:
        """Close every module (environments, connections)."""
        for module in self._modules:
            module.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- errors ---------------------------------------------------------------------------

    def _fail(self, module: str, err: Exception, value: Any, *, in_step: bool = True) -> NoReturn:
        """Re-raise ``err`` as a ModuleError naming the module, the step and the value."""
        if isinstance(err, _PASS_THROUGH):
            raise err  # a pause, a spent budget, a replay that differs: itself, not a failure
        step = self.step_index if in_step else None
        if isinstance(err, ModuleError):
            if err.step is None:
                err.step = step
            raise err
        raise ModuleError(
            module, f"{type(err).__name__}: {err} (input {value!r:.80})", step=step, value=value
        ) from err

    def _fail_output(self, module: str, message: str, value: Any) -> NoReturn:
        raise ModuleOutputError(
            module, f"{message}, got {value!r:.80}", step=self.step_index, value=value
        )

    def _refuse_step(self, action: Action) -> NoReturn:
        if self.episode < 0:
            raise ModuleError("execution", "step() before reset(): call agent.reset() first")
        state = "terminated" if self.terminated else "truncated"
        raise ModuleError(
            "execution",
            f"the episode has ended ({state} after {self.step_index} steps); "
            "call agent.reset() before stepping again",
            step=self.step_index,
            value=action,
        )

    def _reward(self, reward: Any) -> float:
        try:
            return float(reward)
        except (TypeError, ValueError):
            self._fail_output("execution", "the reward must be a number", reward)

    # -- reset ----------------------------------------------------------------------------

    def _begin_episode(self, observation: Observation) -> Observation:
        self.episode += 1
        self._past_steps += self.step_index
        self.step_index = 0
        self.episode_return = 0.0
        self.terminated = self.truncated = False
        self._blocked = False
        self._acted = self._stepped = _NOT_ACTED
        self._returned = (observation, 0.0)
        self._outcome = self._report = self._next = None
        self._choose_paths()
        return observation

    def _end_episode(self, terminated: bool, truncated: bool) -> None:
        """No more steps until reset(): the episode ended, or was cut at a step limit."""
        self.terminated, self.truncated = terminated, truncated
        self._blocked = True
        self._choose_paths()

    def reset(self, *, seed: int | None = None) -> Observation:
        """Start a new episode: reset every module and return the first observation.

        Args:
            seed: reseeds the environment and every module's randomness.
        """
        perception, planning, execution, learning = self._modules
        for module in (perception, planning, learning):
            try:
                module.reset(seed=seed)
            except Exception as err:
                self._fail(module.kind, err, seed, in_step=False)
        try:
            observation = execution.reset(seed=seed)
        except Exception as err:
            self._fail("execution", err, seed, in_step=False)
        return self._begin_episode(observation)

    @property
    def _observation(self) -> Observation:
        """Where the episode stands: the latest step's observation (or the first one)."""
        return self._returned[0]

    # -- act ------------------------------------------------------------------------------

    # act() is AgentCore's: the lean path (see _choose_paths), else this.
    def _act_slow(self, observation: Observation) -> Action:
        if self._record_timings or self._traced:
            return self._act_measured(observation)
        return self._choose(observation, self._features_for(observation))

    def _features_for(self, observation: Observation) -> Features:
        cached = self._next
        if cached is not None and cached[0] is observation:
            return cached[1]
        try:
            return self._perceive(observation)
        except Exception as err:
            self._fail("perception", err, observation)

    def _choose(self, observation: Observation, features: Features) -> Action:
        plan_only = self._plan_only
        if plan_only is not None:
            try:
                action = plan_only(features)
            except Exception as err:
                self._fail("planning", err, features)
            self._acted = (observation, features, action, None)
            return action
        try:
            decision = self._decide(features)
        except Exception as err:
            self._fail("planning", err, features)
        if type(decision) is not Decision and not isinstance(decision, Decision):
            self._fail_output("planning", "decide() must return a Decision", decision)
        self._acted = (observation, features, decision.action, decision)
        return decision.action

    # -- step -----------------------------------------------------------------------------

    # step() is AgentCore's: the lean path (see _choose_paths), else this.
    def _step_slow(self, action: Action) -> tuple[Observation, float]:
        acted = self._acted
        if self._blocked:
            self._refuse_step(action)
        if acted is self._stepped or acted[2] is not action:
            # step() without act(): the transition starts from the current observation.
            observation = self._returned[0]
            acted = (observation, self._features_for(observation), action, None)
            self._acted = acted
        if self._record_timings or self._traced:
            observation, reward, outcome, report = self._step_measured(acted, action)
        else:
            observation, reward, outcome = self._execute(action)
            report = self._learn(acted, observation, reward, outcome) if self._learns() else None
        return self._finish_step(acted, observation, reward, outcome, report)

    def _seed_result(self, result: Any) -> tuple[Observation, float]:
        """execute()'s result checked: a ``(observation, reward)`` tuple, reward a float."""
        if type(result) is not tuple or len(result) != 2:
            self._fail_output("execution", "execute() must return (observation, reward)", result)
        observation, reward = result
        if type(reward) is not float:
            reward = self._reward(reward)
        return observation, reward

    def _execute(self, action: Action) -> tuple[Observation, float, Outcome | None]:
        execute_only = self._execute_only
        try:
            result = execute_only(action) if execute_only is not None else self._perform(action)
        except Exception as err:
            self._fail("execution", err, action)
        if execute_only is not None:
            observation, reward = self._seed_result(result)
            return observation, reward, None
        if not isinstance(result, Outcome):
            self._fail_output("execution", "perform() must return an Outcome", result)
        if type(result.reward) is not float:
            result.reward = self._reward(result.reward)
        return result.observation, result.reward, result

    def _transition(
        self,
        acted: Acted,
        observation: Observation,
        reward: float,
        outcome: Outcome | None,
        next_features: Features,
    ) -> Transition:
        if not self._modules[0].depends_on_learning:
            # act() reuses these features, unless learning can change them (recall from
            # a memory the learner writes): then it perceives again, after the learner.
            self._next = (observation, next_features)
        if outcome is None:
            return Transition(acted[0], acted[1], acted[2], reward, observation, next_features)
        return Transition(
            acted[0], acted[1], acted[2], reward, observation, next_features,
            outcome.terminated, outcome.truncated, outcome.info,
        )  # fmt: skip

    def _learn(
        self, acted: Acted, observation: Observation, reward: float, outcome: Outcome | None
    ) -> dict[str, Any] | None:
        learn_only = self._learn_only
        if learn_only is not None:
            try:
                learn_only(observation, reward)
            except Exception as err:
                self._fail("learning", err, reward)
            return None
        transition = self._transition(
            acted, observation, reward, outcome, self._features_for(observation)
        )
        try:
            return self._update(transition)
        except Exception as err:
            self._fail("learning", err, transition.to_dict())

    def _finish_step(
        self,
        acted: Acted,
        observation: Observation,
        reward: float,
        outcome: Outcome | None,
        report: dict[str, Any] | None,
    ) -> tuple[Observation, float]:
        """Keep the step's record and count it (the lean step() does the same inline)."""
        returned = (observation, reward)
        self._stepped = acted
        self._returned = returned
        self._outcome = outcome
        self._report = report
        self.step_index += 1
        self.episode_return += reward
        if outcome is not None and (outcome.terminated or outcome.truncated):
            self._end_episode(outcome.terminated, outcome.truncated)
        if self.listeners:
            self._notify()
        return returned

    # -- records --------------------------------------------------------------------------

    def _notify(self) -> None:
        record = self.last_record
        if record is not None:
            for listener in self.listeners:
                listener(record)

    @property
    def last_record(self) -> StepRecord | None:
        """The record of the most recent step of the current episode, or ``None``."""
        if self.step_index == 0:
            return None
        observation, features, action, decision = self._stepped
        next_observation, reward = self._returned
        if decision is None:
            reason = scores = details = None
        else:
            reason, scores, details = decision.reason, decision.scores, decision.details
        # The step's mode: the current one, unless it changed since the step.
        training = self._mode_before if self._mode_step is self._stepped else self._training
        outcome = self._outcome
        if outcome is None:
            terminated, truncated, info = False, False, {}
        else:
            terminated, truncated, info = outcome.terminated, outcome.truncated, outcome.info
        # Positional: this runs once per step whenever a listener is attached.
        return StepRecord(
            self.episode, self.step_index - 1, observation, features, action, reason, scores,
            reward, next_observation, terminated, truncated, info, self._report,
            dict(self._timings) if self._record_timings else None, training, details,
        )  # fmt: skip

    def __repr__(self) -> str:
        modules = ", ".join(repr(m) for m in self._modules)
        return f"Agent(name={self.name!r}, {modules})"
