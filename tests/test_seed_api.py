"""The seed's public API (section 5.2): modules defining only their one method."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import llmagentos
from llmagentos import Agent, ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from tests.conftest import CorridorExecution, CountingPerception, RecordingLearning

ROOT = Path(__file__).resolve().parents[1]

# Section 5.2 of the seed, verbatim except the bodies it leaves as comments.
SEED_LINES = """\
from llmagentos import Agent, PerceptionModule, PlanningModule, ExecutionModule, LearningModule
class MyPerceptionModule(PerceptionModule):
    def perceive(self, observation):
        # 处理 observation，提取特征
        return features
class MyPlanningModule(PlanningModule):
    def plan(self, features):
        # 根据 features，制定行动计划
        return action
class MyExecutionModule(ExecutionModule):
    def execute(self, action):
        # 执行 action，与外部环境交互
        return observation, reward
class MyLearningModule(LearningModule):
    def learn(self, observation, reward):
        # 根据 observation 和 reward，更新 LLM 的知识和技能
agent = Agent(
    perception_module=MyPerceptionModule(),
    planning_module=MyPlanningModule(),
    execution_module=MyExecutionModule(),
    learning_module=MyLearningModule()
)
# 运行 LLM Agent
observation = agent.reset()
while True:
    action = agent.act(observation)
    observation, reward = agent.step(action)
""".splitlines()


def test_quickstart_contains_the_seed_code_unchanged_in_order() -> None:
    lines = (ROOT / "examples" / "seed_quickstart.py").read_text(encoding="utf-8").splitlines()
    position = 0
    for wanted in SEED_LINES:
        while position < len(lines) and lines[position] != wanted:
            position += 1
        assert position < len(lines), f"seed line missing or out of order: {wanted!r}"
        position += 1


def test_quickstart_runs_and_learns_to_walk_to_the_goal() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "seed_quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "reached cell 20" in result.stdout
    # It learned that forward (+1) is better than back (-1).
    values = ast.literal_eval(result.stdout.split("learned values: ")[1].strip())
    assert values[1] > 0 > values[-1]


def test_seed_names_import_from_the_package() -> None:
    for name in (
        "Agent",
        "PerceptionModule",
        "PlanningModule",
        "ExecutionModule",
        "LearningModule",
    ):
        assert name in llmagentos.__all__
        assert getattr(llmagentos, name).__module__.startswith("llmagentos.")


def test_reset_act_step_follow_the_seed_flow(seed_agent: Agent) -> None:
    observation = seed_agent.reset()
    assert observation is None  # an execution module without an environment
    action = seed_agent.act(observation)
    assert action == 1
    observation, reward = seed_agent.step(action)
    assert (observation, reward) == (1, 1.0)
    observation, reward = seed_agent.step(seed_agent.act(observation))
    assert (observation, reward) == (2, 1.0)
    learning = seed_agent.learning_module
    assert isinstance(learning, RecordingLearning)
    assert learning.seen == [(1, 1.0), (2, 1.0)]


def test_perception_runs_once_per_observation(seed_agent: Agent) -> None:
    observation = seed_agent.reset()
    for _ in range(5):
        observation, _ = seed_agent.step(seed_agent.act(observation))
    perception = seed_agent.perception_module
    assert isinstance(perception, CountingPerception)
    assert perception.calls == [None, 1, 2, 3, 4]


def test_step_keeps_the_seed_two_tuple_and_the_record_has_the_rest(seed_agent: Agent) -> None:
    observation = seed_agent.reset()
    result = seed_agent.step(seed_agent.act(observation))
    assert isinstance(result, tuple) and len(result) == 2
    record = seed_agent.last_record
    assert record is not None
    assert (record.step, record.action, record.reward, record.next_observation) == (0, 1, 1.0, 1)
    assert record.terminated is False and record.truncated is False
    assert record.features == {"position": 0}


def test_bare_modules_make_a_working_agent() -> None:
    # The base classes alone: identity perception, no environment, learning nothing.
    class Planner(PlanningModule):
        def plan(self, features: object) -> str:
            return "wait"

    class Executor(ExecutionModule):
        def execute(self, action: object) -> tuple[str, float]:
            return f"did {action}", 0.5

    agent = Agent(PerceptionModule(), Planner(), Executor(), LearningModule())
    assert agent.reset() is None
    assert agent.step(agent.act(None)) == ("did wait", 0.5)


def test_execution_module_without_environment_resets_to_none() -> None:
    assert ExecutionModule().reset() is None
    assert CorridorExecution().reset(seed=3) is None


def test_agent_rejects_a_module_of_the_wrong_kind() -> None:
    with pytest.raises(llmagentos.exceptions.ConfigError, match="planning_module"):
        Agent(planning_module=PerceptionModule())  # type: ignore[arg-type]
