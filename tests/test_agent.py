"""The Agent loop: episodes, modes, records, async twins, and errors that name their source."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmagentos import Agent, ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from llmagentos.exceptions import ActionError, ModuleError, ModuleOutputError
from llmagentos.rl import QTable
from llmagentos.trace import TraceWriter, read_trace
from llmagentos.types import Decision, Outcome, StepRecord
from tests.conftest import tabular_agent


def test_run_returns_per_episode_results_with_the_full_transition() -> None:
    agent = tabular_agent("FrozenLake-v1")
    result = agent.run(30, seed=0)
    assert len(result.episodes) == 30
    assert [e.episode for e in result.episodes] == list(range(30))
    for episode in result.episodes:
        assert episode.length >= 1
        assert episode.terminated or episode.truncated
        assert episode.total_reward in (0.0, 1.0)
    assert result.total_steps == sum(e.length for e in result.episodes)
    assert agent.done and agent.last_record is not None
    assert agent.last_record.terminated or agent.last_record.truncated


def test_seeded_runs_are_reproducible() -> None:
    first = tabular_agent("Taxi-v4").run(50, seed=7).returns
    second = tabular_agent("Taxi-v4").run(50, seed=7).returns
    assert first == second
    assert first != tabular_agent("Taxi-v4").run(50, seed=8).returns


def test_max_steps_truncates_an_episode() -> None:
    agent = tabular_agent("Taxi-v4", epsilon=1.0)
    episode = agent.run_episode(seed=0, max_steps=5)
    assert (episode.length, episode.truncated) == (5, True)


def test_eval_mode_is_greedy_and_does_not_learn() -> None:
    agent = tabular_agent("FrozenLake-v1")
    agent.run(20, seed=0)
    learner = agent.learning_module.optimizer
    assert learner is not None
    q: QTable = learner.q  # type: ignore[attr-defined]
    before = [row[:] for row in q.rows]
    records: list[StepRecord] = []
    agent.listeners.append(records.append)
    agent.run(5, seed=1, train=False)
    assert q.rows == before
    assert agent.training  # mode restored after the run
    assert records and all(not r.training and r.learning is None for r in records)
    assert all(r.reason is not None and r.reason.startswith("greedy") for r in records)


def test_step_records_explain_each_decision_and_update() -> None:
    records: list[StepRecord] = []
    agent = tabular_agent("CliffWalking-v1", max_episode_steps=30)
    agent.listeners.append(records.append)
    agent.record_timings = True
    agent.run(2, seed=0)
    assert len(records) == agent.total_steps
    record = records[0]
    assert (record.episode, record.step) == (0, 0)
    assert record.reason and record.scores is not None and len(record.scores) == 4
    assert record.learning is not None and "td_error" in record.learning
    assert record.timings is not None and set(record.timings) == {
        "perceive",
        "plan",
        "execute",
        "learn",
    }
    assert records[-1].episode == 1 and records[-1].truncated


def test_trace_writer_writes_one_json_line_per_step(tmp_path: Any) -> None:
    agent = tabular_agent("FrozenLake-v1")
    with TraceWriter(tmp_path / "trace.jsonl", agent="lake", every=2) as trace:
        agent.listeners.append(trace)
        result = agent.run(4, seed=0)
    lines = read_trace(tmp_path / "trace.jsonl")
    kept = [e for e in result.episodes if e.episode % 2 == 0]
    assert len(lines) == sum(e.length for e in kept)
    assert {line["episode"] for line in lines} == {0, 2}
    assert all(line["agent"] == "lake" and isinstance(line["action"], int) for line in lines)
    assert lines[0]["reason"] and lines[0]["learning"]["alpha"] == 0.5


async def test_async_twins_give_the_same_run_as_sync() -> None:
    sync_returns = tabular_agent("Taxi-v4").run(40, seed=3).returns
    async_returns = (await tabular_agent("Taxi-v4").arun(40, seed=3)).returns
    assert async_returns == sync_returns


async def test_a_thousand_agents_share_one_event_loop() -> None:
    class SlowPlanner(PlanningModule):
        active = 0
        peak = 0

        async def aplan(self, features: Any) -> Any:
            SlowPlanner.active += 1
            SlowPlanner.peak = max(SlowPlanner.peak, SlowPlanner.active)
            await asyncio.sleep(0.001)  # a model call, say
            SlowPlanner.active -= 1
            return 1

    class Counter(ExecutionModule):
        count = 0

        def perform(self, action: Any) -> Outcome:
            self.count += action
            return Outcome(self.count, 1.0, terminated=self.count >= 3)

    agents = [Agent(planning_module=SlowPlanner(), execution_module=Counter()) for _ in range(1000)]
    results = await asyncio.gather(*(a.arun_episode() for a in agents))
    assert all(r.length == 3 and r.total_reward == 3.0 for r in results)
    assert SlowPlanner.peak > 100  # the planners' waits overlapped


def test_action_outside_the_space_names_module_step_and_value() -> None:
    class Bad(PlanningModule):
        def plan(self, features: Any) -> Any:
            return 9

    agent = Agent(planning_module=Bad(), execution_module=ExecutionModule("Taxi-v4"))
    agent.reset(seed=0)
    agent.step(0)
    agent.step(1)
    with pytest.raises(ActionError) as caught:
        agent.step(agent.act(agent._observation))
    err = caught.value
    assert (err.module, err.step, err.value) == ("execution", 2, 9)
    assert "execution module at step 2" in str(err) and "Discrete(6)" in str(err)


def test_module_exceptions_are_wrapped_with_module_and_step() -> None:
    class Broken(PerceptionModule):
        def perceive(self, observation: Any) -> Any:
            if observation == 2:
                raise KeyError("sensor")
            return observation

    class Counter(ExecutionModule):
        n = 0

        def execute(self, action: Any) -> tuple[Any, float]:
            self.n += 1
            return self.n, 0.0

    class Plan(PlanningModule):
        def plan(self, features: Any) -> Any:
            return 0

    agent = Agent(Broken(), Plan(), Counter())
    observation = agent.reset()
    observation, _ = agent.step(agent.act(observation))
    observation, _ = agent.step(agent.act(observation))
    with pytest.raises(ModuleError) as caught:
        agent.act(observation)
    assert (caught.value.module, caught.value.step, caught.value.value) == ("perception", 2, 2)
    assert isinstance(caught.value.__cause__, KeyError)


def test_wrong_shapes_are_module_output_errors() -> None:
    class ThreeTuple(ExecutionModule):
        def execute(self, action: Any) -> Any:
            return 1, 2, 3

    class TextReward(ExecutionModule):
        def execute(self, action: Any) -> Any:
            return 1, "lots"

    class NotADecision(PlanningModule):
        def decide(self, features: Any) -> Any:
            return 3

    agent = Agent(planning_module=NotADecision())
    agent.reset()
    with pytest.raises(ModuleOutputError, match="planning module at step 0: decide"):
        agent.act(None)
    for module, pattern in (
        (ThreeTuple(), r"must return \(observation, reward\)"),
        (TextReward(), "reward"),
    ):
        agent = Agent(planning_module=PlanningModule(_Const()), execution_module=module)
        agent.reset()
        with pytest.raises(ModuleOutputError, match=pattern) as caught:
            agent.step(agent.act(None))
        assert caught.value.module == "execution" and caught.value.step == 0


class _Const:
    def select(self, features: Any, task: Any = None, *, explore: bool = True) -> Decision:
        return Decision(0)


def test_stepping_outside_an_episode_is_refused() -> None:
    agent = tabular_agent("FrozenLake-v1", env_kwargs={"is_slippery": False})
    with pytest.raises(ModuleError, match="before reset"):
        agent.step(0)
    agent.reset(seed=0)
    for action in (1, 1, 2, 2, 1, 2):  # down, down, right, right, down, right: the goal
        agent.step(action)
    assert agent.terminated and agent.episode_return == 1.0
    with pytest.raises(ModuleError, match="episode has ended"):
        agent.step(0)


def test_learning_errors_name_the_learning_module() -> None:
    class Exploding(LearningModule):
        def learn(self, observation: Any, reward: float) -> None:
            raise ZeroDivisionError("oops")

    agent = Agent(
        planning_module=PlanningModule(_Const()),
        execution_module=_Echo(),
        learning_module=Exploding(),
    )
    agent.reset()
    with pytest.raises(ModuleError, match="learning module at step 0: ZeroDivisionError"):
        agent.step(agent.act(None))


class _Echo(ExecutionModule):
    def execute(self, action: Any) -> tuple[Any, float]:
        return action, 1.0


def test_default_planning_is_random_over_a_discrete_action_space() -> None:
    agent = Agent(execution_module=ExecutionModule("Taxi-v4"))
    episode = agent.run_episode(seed=0, max_steps=50)
    assert episode.length == 50
    record = agent.last_record
    assert record is not None and record.reason == "random of 6"


async def test_coroutine_modules_give_the_same_run_as_sync_ones() -> None:
    """Modules that really await (async overrides) take the agent's coroutine path."""

    class AsyncExecution(ExecutionModule):
        async def aperform(self, action: Any) -> Outcome:
            await asyncio.sleep(0)
            return await super().aperform(action)

    class AsyncPlanning(PlanningModule):
        async def adecide(self, features: Any) -> Decision:
            await asyncio.sleep(0)
            return await super().adecide(features)

    def build(execution_cls: type[ExecutionModule], planning_cls: type[PlanningModule]) -> Agent:
        reference = tabular_agent("Taxi-v4", seed=5)
        planning = planning_cls(reference.planning_module.selector)
        return Agent(
            reference.perception_module,
            planning,
            execution_cls("Taxi-v4"),
            reference.learning_module,
        )

    sync_result = build(ExecutionModule, PlanningModule).run(30, seed=2)
    async_agent = build(AsyncExecution, AsyncPlanning)
    assert async_agent._async_act and async_agent._async_step
    async_result = await async_agent.arun(30, seed=2)
    assert async_result.returns == sync_result.returns
    assert async_agent.last_record is not None and async_agent.last_record.learning
