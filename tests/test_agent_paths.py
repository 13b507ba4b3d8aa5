"""The Agent's lean act()/step() for seed-style modules and the full paths give one record.

The lean paths run when nothing is measured or traced; these tests switch what they
leave out on and off mid-episode and check that nothing is lost either way.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmagentos import Agent, ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from llmagentos.exceptions import ModuleError, ModuleOutputError
from llmagentos.types import StepRecord
from tests.conftest import (
    CorridorExecution,
    CountingPerception,
    ForwardPlanning,
    RecordingLearning,
)


def _fields(record: StepRecord) -> tuple[Any, ...]:
    """Everything in a record but the timings."""
    return (
        record.episode, record.step, record.observation, record.features, record.action,
        record.reason, record.scores, record.reward, record.next_observation,
        record.terminated, record.truncated, record.info, record.learning, record.training,
        record.details,
    )  # fmt: skip


def _run(agent: Agent, steps: int) -> list[StepRecord]:
    records: list[StepRecord] = []
    agent.listeners.append(records.append)
    observation = agent.reset()
    for _ in range(steps):
        observation, _ = agent.step(agent.act(observation))
    agent.listeners.remove(records.append)
    return records


def test_a_listener_added_after_construction_gets_every_step(seed_agent: Agent) -> None:
    observation = seed_agent.reset()
    assert seed_agent._lean_act is not None and seed_agent._lean_step is not None
    observation, _ = seed_agent.step(seed_agent.act(observation))  # before the listener
    records: list[StepRecord] = []
    seed_agent.listeners.append(records.append)
    for _ in range(3):
        observation, _ = seed_agent.step(seed_agent.act(observation))
    assert [(r.step, r.observation, r.action, r.reward, r.next_observation) for r in records] == [
        (1, 1, 1, 1.0, 2),
        (2, 2, 1, 1.0, 3),
        (3, 3, 1, 1.0, 4),
    ]
    assert records[0].features == {"position": 1} and records[0].info == {}
    assert all(r.training and r.timings is None and r.learning is None for r in records)
    assert (seed_agent.step_index, seed_agent.total_steps, seed_agent.episode_return) == (4, 4, 4.0)


def test_timings_and_tracing_switched_mid_episode_keep_the_same_records(
    seed_agent: Agent,
) -> None:
    records: list[StepRecord] = []
    seed_agent.listeners.append(records.append)
    observation = seed_agent.reset()
    for index in range(6):
        seed_agent.record_timings = index in (2, 3)
        if index == 4:
            seed_agent._trace_phases(True)  # what a traced episode does (telemetry off)
        observation, _ = seed_agent.step(seed_agent.act(observation))
    seed_agent._trace_phases(False)
    timed = [r.step for r in records if r.timings is not None]
    assert timed == [2, 3]
    assert set(records[2].timings or {}) == {"perceive", "plan", "execute", "learn"}
    other = _run(_fresh_seed_agent(), 6)
    assert [_fields(r) for r in records] == [_fields(r) for r in other]


def _fresh_seed_agent() -> Agent:
    return Agent(CountingPerception(), ForwardPlanning(), CorridorExecution(), RecordingLearning())


def test_step_without_act_or_with_another_action_is_not_the_planned_step(
    seed_agent: Agent,
) -> None:
    observation = seed_agent.reset()
    seed_agent.step(seed_agent.act(observation))
    seed_agent.step(1)  # no act(): the same action object as the last one planned
    record = seed_agent.last_record
    assert record is not None
    assert (record.step, record.observation, record.features) == (1, 1, {"position": 1})
    seed_agent.act(2)
    seed_agent.step(2)  # not the action act() returned
    record = seed_agent.last_record
    assert record is not None
    assert (record.step, record.observation, record.action, record.reward) == (2, 2, 2, 2.0)
    learning = seed_agent.learning_module
    assert learning.seen == [(1, 1.0), (2, 1.0), (4, 2.0)]  # type: ignore[attr-defined]


def test_the_last_record_stays_the_last_step_s_until_the_next_step(seed_agent: Agent) -> None:
    observation = seed_agent.reset()
    assert seed_agent.last_record is None
    observation, _ = seed_agent.step(seed_agent.act(observation))
    seed_agent.act(observation)
    record = seed_agent.last_record
    assert record is not None and (record.step, record.observation) == (0, None)


def test_a_record_keeps_the_mode_its_step_ran_in(seed_agent: Agent) -> None:
    observation = seed_agent.reset()
    observation, _ = seed_agent.step(seed_agent.act(observation))
    seed_agent.eval()
    seed_agent.train()
    seed_agent.eval()
    record = seed_agent.last_record
    assert record is not None and record.training
    observation, _ = seed_agent.step(seed_agent.act(observation))
    record = seed_agent.last_record
    assert record is not None and not record.training
    seed_agent.training = True  # set directly, not through train()
    record = seed_agent.last_record
    assert record is not None and not record.training
    learning = seed_agent.learning_module
    assert learning.seen == [(1, 1.0)]  # type: ignore[attr-defined]  # not in eval


def _raiser(kind: str) -> Any:
    def boom(self: Any, *args: Any) -> Any:
        raise KeyError(kind)

    base = {
        "perception": (PerceptionModule, "perceive"),
        "planning": (PlanningModule, "plan"),
        "execution": (ExecutionModule, "execute"),
        "learning": (LearningModule, "learn"),
    }[kind]
    return type(f"Raising{kind}", (base[0],), {base[1]: boom})()


@pytest.mark.parametrize("kind", ["perception", "planning", "execution", "learning"])
def test_a_raising_seed_method_names_its_module(kind: str) -> None:
    parts: dict[str, Any] = {
        "perception": CountingPerception(),
        "planning": ForwardPlanning(),
        "execution": CorridorExecution(),
        "learning": RecordingLearning(),
    }
    parts[kind] = _raiser(kind)
    agent = Agent(parts["perception"], parts["planning"], parts["execution"], parts["learning"])
    agent.reset()
    with pytest.raises(ModuleError) as caught:
        agent.step(agent.act(None))
    assert caught.value.module == kind and caught.value.step == 0
    assert isinstance(caught.value.__cause__, KeyError)


@pytest.mark.parametrize(
    ("result", "pattern"),
    [
        ([1, 1.0], r"must return \(observation, reward\)"),
        ((1, 1.0, 2), r"must return \(observation, reward\)"),
        (None, r"must return \(observation, reward\)"),
        ((1, "lots"), "reward"),
    ],
)
def test_a_bad_seed_result_is_a_module_output_error(result: Any, pattern: str) -> None:
    class Returning(ExecutionModule):
        def execute(self, action: Any) -> Any:
            return result

    agent = Agent(CountingPerception(), ForwardPlanning(), Returning(), RecordingLearning())
    agent.reset()
    with pytest.raises(ModuleOutputError, match=pattern) as caught:
        agent.step(agent.act(None))
    assert caught.value.module == "execution" and caught.value.step == 0


def test_an_integer_reward_comes_back_as_a_float() -> None:
    class IntReward(ExecutionModule):
        def execute(self, action: Any) -> tuple[Any, float]:
            return "there", 3  # type: ignore[return-value]

    agent = Agent(CountingPerception(), ForwardPlanning(), IntReward(), RecordingLearning())
    agent.reset()
    observation, reward = agent.step(agent.act(None))
    assert (observation, reward, type(reward)) == ("there", 3.0, float)
    assert agent.episode_return == 3.0


def test_a_cut_episode_refuses_steps_until_reset(seed_agent: Agent) -> None:
    result = seed_agent.run_episode(max_steps=3)
    assert (result.length, result.truncated) == (3, True)
    action = seed_agent.act(seed_agent._observation)
    with pytest.raises(ModuleError, match="episode has ended"):
        seed_agent.step(action)
    observation = seed_agent.reset()
    seed_agent.step(seed_agent.act(observation))
    assert seed_agent.step_index == 1
