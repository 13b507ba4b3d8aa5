"""Each module kind: whichever of its methods a subclass overrides, the others follow."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmagentos import ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from llmagentos.exceptions import ConfigError, ModuleError
from llmagentos.modules import (
    BinningExtractor,
    EpisodeState,
    GoalQueue,
    ScaledReward,
)
from llmagentos.types import Decision, Outcome, Transition


def _transition(reward: float = 1.0) -> Transition:
    return Transition(0, 0, 1, reward, 1, 1)


# -- perception -------------------------------------------------------------------------


class SyncPerception(PerceptionModule):
    def perceive(self, observation: Any) -> Any:
        return observation * 2


class AsyncPerception(PerceptionModule):
    async def aperceive(self, observation: Any) -> Any:
        await asyncio.sleep(0)
        return observation * 3


@pytest.mark.parametrize(("module", "expected"), [(SyncPerception(), 10), (AsyncPerception(), 15)])
async def test_perception_twins_agree(module: PerceptionModule, expected: int) -> None:
    assert module.perceive(5) == expected
    assert await module.aperceive(5) == expected


def test_perception_runs_collector_preprocessor_extractor_in_order() -> None:
    calls: list[str] = []

    class Collector:
        def collect(self, observation: Any) -> Any:
            calls.append("collect")
            return {"raw": observation}

    class Cleaner:
        def preprocess(self, data: Any) -> Any:
            calls.append("preprocess")
            return data["raw"].strip().lower()

    class Words:
        def extract(self, data: Any) -> Any:
            calls.append("extract")
            return data.split()

    module = PerceptionModule(collector=Collector(), preprocessor=Cleaner(), extractor=Words())
    assert module.perceive("  Go North ") == ["go", "north"]
    assert calls == ["collect", "preprocess", "extract"]


def test_binning_extractor_maps_vectors_to_one_state_index() -> None:
    extractor = BinningExtractor(low=[0.0, -1.0], high=[1.0, 1.0], bins=[2, 4])
    assert extractor.n_states == 8
    assert extractor.extract([0.0, -1.0]) == 0
    assert extractor.extract([0.99, 0.99]) == 7
    assert extractor.extract([0.6, -0.1]) == 1 * 4 + 1
    assert extractor.extract([5.0, -9.0]) == 4  # clipped into range
    with pytest.raises(ConfigError, match="high"):
        BinningExtractor(low=[1.0], high=[1.0])


# -- planning ---------------------------------------------------------------------------


class PlanOnly(PlanningModule):
    def plan(self, features: Any) -> Any:
        return features + 1


class DecideOnly(PlanningModule):
    def decide(self, features: Any) -> Decision:
        return Decision(features + 2, reason="because", scores=[1.0])


class AsyncPlanOnly(PlanningModule):
    async def aplan(self, features: Any) -> Any:
        return features + 3


class AsyncDecideOnly(PlanningModule):
    async def adecide(self, features: Any) -> Decision:
        return Decision(features + 4, reason="async because")


@pytest.mark.parametrize(
    ("module", "offset", "reason"),
    [
        (PlanOnly(), 1, None),
        (DecideOnly(), 2, "because"),
        (AsyncPlanOnly(), 3, None),
        (AsyncDecideOnly(), 4, "async because"),
    ],
)
async def test_planning_any_override_drives_all_four_methods(
    module: PlanningModule, offset: int, reason: str | None
) -> None:
    assert module.plan(10) == 10 + offset
    assert module.decide(10) == Decision(10 + offset, reason, module.decide(10).scores)
    assert await module.aplan(10) == 10 + offset
    assert (await module.adecide(10)).reason == reason


def test_planning_runs_goal_manager_task_planner_selector() -> None:
    class Selector:
        def select(self, features: Any, task: Any = None, *, explore: bool = True) -> Decision:
            return Decision(f"{task}@{features}", reason=f"explore={explore}")

    goals = GoalQueue(["key", "door"], achieved=lambda goal, f: goal == "key" and f == "has key")
    module = PlanningModule(Selector(), goal_manager=goals)
    assert module.decide("start").action == "key@start"
    assert module.decide("has key").action == "door@has key"
    module.train(False)
    assert module.decide("x").reason == "explore=False"
    module.reset()
    assert goals.index == 0


def test_planning_without_selector_says_how_to_fix_it() -> None:
    with pytest.raises(ModuleError, match="no action selector"):
        PlanningModule().plan(1)


def test_super_plan_from_an_override_uses_the_components_not_a_loop() -> None:
    class Selector:
        def select(self, features: Any, task: Any = None, *, explore: bool = True) -> Decision:
            return Decision(7)

    class Wrapping(PlanningModule):
        def plan(self, features: Any) -> Any:
            return super().plan(features) * 10

    assert Wrapping(Selector()).plan(0) == 70
    assert Wrapping(Selector()).decide(0).action == 70


# -- execution --------------------------------------------------------------------------


class ExecuteOnly(ExecutionModule):
    def execute(self, action: Any) -> tuple[Any, float]:
        return f"obs{action}", 1.0


class PerformOnly(ExecutionModule):
    def perform(self, action: Any) -> Outcome:
        return Outcome(f"obs{action}", 2.0, terminated=True)


class AsyncExecuteOnly(ExecutionModule):
    async def aexecute(self, action: Any) -> tuple[Any, float]:
        return f"obs{action}", 3.0


class AsyncPerformOnly(ExecutionModule):
    async def aperform(self, action: Any) -> Outcome:
        return Outcome(f"obs{action}", 4.0, truncated=True)


@pytest.mark.parametrize(
    ("module", "reward", "done"),
    [
        (ExecuteOnly(), 1.0, False),
        (PerformOnly(), 2.0, True),
        (AsyncExecuteOnly(), 3.0, False),
        (AsyncPerformOnly(), 4.0, True),
    ],
)
async def test_execution_any_override_drives_all_four_methods(
    module: ExecutionModule, reward: float, done: bool
) -> None:
    assert module.execute(1) == ("obs1", reward)
    assert module.perform(1).done is done
    assert await module.aexecute(2) == ("obs2", reward)
    assert (await module.aperform(2)).reward == reward


def test_execution_with_env_tracks_state_and_feedback() -> None:
    seen: list[Any] = []

    class Feedback:
        def collect(self, action: Any, outcome: Outcome) -> Outcome:
            seen.append(action)
            outcome.info["seen"] = True
            return outcome

    module = ExecutionModule(
        "FrozenLake-v1", feedback=Feedback(), env_kwargs={"is_slippery": False}
    )
    assert module.reset(seed=0) == 0
    observation, reward = module.execute(2)  # right
    assert (observation, reward) == (1, 0.0)
    state = module.state
    assert isinstance(state, EpisodeState)
    assert (state.observation, state.steps, state.info["seen"]) == (1, 1, True)
    assert seen == [2]
    module.close()


def test_execution_without_executor_explains() -> None:
    with pytest.raises(ModuleError, match="no executor"):
        ExecutionModule().execute(0)
    with pytest.raises(TypeError, match="either env or executor"):
        ExecutionModule("Taxi-v4", executor=object())  # type: ignore[arg-type]


# -- learning ---------------------------------------------------------------------------


class LearnOnly(LearningModule):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, float]] = []

    def learn(self, observation: Any, reward: float) -> None:
        self.seen.append((observation, reward))


class AsyncLearnOnly(LearningModule):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, float]] = []

    async def alearn(self, observation: Any, reward: float) -> None:
        self.seen.append((observation, -reward))


async def test_learning_seed_method_receives_next_observation_and_reward() -> None:
    module = LearnOnly()
    assert module.update(_transition(5.0)) is None
    await module.aupdate(_transition(6.0))
    assert module.seen == [(1, 5.0), (1, 6.0)]


async def test_learning_async_override_is_used_from_sync_code() -> None:
    module = AsyncLearnOnly()
    module.update(_transition(2.0))
    module.learn("x", 1.0)
    await module.aupdate(_transition(3.0))
    # With only alearn overridden, every path runs it: all rewards come back negated.
    assert module.seen == [(1, -2.0), ("x", -1.0), (1, -3.0)]


def test_learning_components_apply_the_reward_function_before_the_optimizer() -> None:
    got: list[float] = []

    class Optimizer:
        def update(self, transition: Transition) -> dict[str, Any] | None:
            got.append(transition.reward)
            return {"ok": True}

    module = LearningModule(Optimizer(), reward_fn=ScaledReward(scale=2.0, offset=1.0, high=6.0))
    assert module.update(_transition(1.0)) == {"ok": True}
    module.update(_transition(10.0))
    assert got == [3.0, 6.0]


def test_learning_with_optimizer_refuses_bare_learn_calls_with_a_reason() -> None:
    class Optimizer:
        def update(self, transition: Transition) -> None:
            return None

    with pytest.raises(ModuleError, match="whole transitions"):
        LearningModule(Optimizer()).learn(0, 1.0)
    LearningModule().learn(0, 1.0)  # no optimizer: nothing to learn, no error


def test_sync_methods_work_inside_a_running_event_loop() -> None:
    async def main() -> Any:
        # A sync call from async code runs the async override on a private loop.
        return AsyncPlanOnly().plan(1), AsyncPerception().perceive(2)

    assert asyncio.run(main()) == (4, 6)


class SuperAsyncPerception(PerceptionModule):
    async def aperceive(self, observation: Any) -> Any:
        await asyncio.sleep(0)
        return await super().aperceive(observation)


class SuperAsyncPlanning(PlanningModule):
    async def aplan(self, features: Any) -> Any:
        await asyncio.sleep(0)
        return await super().aplan(features)


class SuperAsyncExecution(ExecutionModule):
    async def aexecute(self, action: Any) -> tuple[Any, float]:
        await asyncio.sleep(0)
        return await super().aexecute(action)


class SuperAsyncLearning(LearningModule):
    async def alearn(self, observation: Any, reward: float) -> None:
        await asyncio.sleep(0)
        await super().alearn(observation, reward)


async def test_async_overrides_may_call_super_without_recursion() -> None:
    class Selector:
        def select(self, features: Any, task: Any = None, *, explore: bool = True) -> Decision:
            return Decision(features + 1)

    perception = SuperAsyncPerception()
    assert await perception.aperceive(4) == 4
    assert perception.perceive(4) == 4  # sync face runs the async override
    planning = SuperAsyncPlanning(Selector())
    assert await planning.aplan(1) == 2
    assert planning.plan(1) == 2
    execution = SuperAsyncExecution("FrozenLake-v1", env_kwargs={"is_slippery": False})
    execution.reset(seed=0)
    assert await execution.aexecute(2) == (1, 0.0)
    assert execution.execute(1) == (5, 0.0)
    learning = SuperAsyncLearning()
    await learning.alearn(0, 1.0)  # no optimizer: nothing to learn, and no loop
    learning.learn(0, 1.0)


@pytest.mark.parametrize("observation", [3.5, 3.0, True, "7", None, [3]])
def test_a_discrete_observation_that_is_not_an_integer_is_refused(observation: object) -> None:
    from llmagentos.modules.perception import DiscreteExtractor

    with pytest.raises(ValueError, match="discrete observation is an integer"):
        DiscreteExtractor().extract(observation)


def test_numpy_integers_are_discrete_observations() -> None:
    import numpy as np

    from llmagentos.modules.perception import DiscreteExtractor

    assert DiscreteExtractor().extract(np.int64(7)) == 7
    assert type(DiscreteExtractor().extract(np.array(4))) is int
