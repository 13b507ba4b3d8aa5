"""Environments by id or object, and the public conformance checkers."""

from __future__ import annotations

from typing import Any

import gymnasium
import pytest
from gymnasium import spaces

from llmagentos import ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from llmagentos.checks import check_env, check_module
from llmagentos.envs import EnvExecutor, env_ids, make_env
from llmagentos.exceptions import CheckError, EnvError, RegistryError
from llmagentos.modules import DiscreteExtractor
from llmagentos.rl import EpsilonGreedySelector, QLearning, QTable
from llmagentos.types import Decision, Transition


@pytest.mark.parametrize("env_id", ["Taxi-v4", "CliffWalking-v1", "FrozenLake-v1"])
def test_gymnasium_ids_make_conforming_envs(env_id: str) -> None:
    env = make_env(env_id)
    check_env(env)
    assert env_id in env_ids()["gymnasium"]


def test_unknown_id_lists_close_matches() -> None:
    with pytest.raises(RegistryError) as caught:
        make_env("Taxi-v3")
    assert "Taxi-v4" in caught.value.suggestions
    assert "did you mean 'Taxi-v4'" in str(caught.value)


def test_gymnasium_refusing_arguments_is_an_env_error() -> None:
    with pytest.raises(EnvError, match="FrozenLake-v1"):
        make_env("FrozenLake-v1", map_name="no-such-map")


class Line(gymnasium.Env[int, int]):
    """A 5-cell line as a plain Gymnasium env: the goal is the right end."""

    observation_space = spaces.Discrete(5)
    action_space = spaces.Discrete(2)

    def __init__(self) -> None:
        self.position = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = 0
        return 0, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        self.position = max(0, min(4, self.position + (1 if action else -1)))
        done = self.position == 4
        return self.position, float(done), done, False, {}


def test_any_gymnasium_env_object_plugs_into_execution() -> None:
    module = ExecutionModule(Line())
    assert module.reset(seed=0) == 0
    assert module.perform(1).observation == 1
    check_env(Line())
    check_module(ExecutionModule(Line()))


class NoInfo(Line):
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        return 0


class StringReward(Line):
    def step(self, action: int) -> Any:
        return 0, "one", False, False, {}


class OutOfSpace(Line):
    def step(self, action: int) -> Any:
        return 7, 0.0, False, False, {}


class FourTuple(Line):
    def step(self, action: int) -> Any:
        return 0, 0.0, False, {}


class Unseeded(Line):
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.position = int(self.np_random.integers(0, 4)) if seed is None else 0
        self.counter = getattr(self, "counter", 0) + 1
        return self.counter % 5, {}


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (NoInfo(), "must return \\(observation, info\\)"),
        (StringReward(), "not a finite number"),
        (OutOfSpace(), "outside observation_space"),
        (FourTuple(), "five|truncated"),
        (Unseeded(), "not deterministic"),
        (object(), "no reset"),
    ],
)
def test_check_env_finds_each_violation(env: Any, problem: str) -> None:
    with pytest.raises(CheckError, match=problem):
        check_env(env)


def test_env_executor_rejects_malformed_env_results() -> None:
    executor = EnvExecutor(FourTuple())
    with pytest.raises(EnvError, match="must return"):
        executor.execute(1)
    with pytest.raises(EnvError, match="not an environment"):
        make_env(42)


def test_check_module_passes_the_builtin_modules() -> None:
    q = QTable(2, 5)
    check_module(PerceptionModule(extractor=DiscreteExtractor()), sample=3)
    check_module(PlanningModule(EpsilonGreedySelector(q, epsilon=0.5, seed=1)), sample=2)
    check_module(ExecutionModule("Taxi-v4"))
    check_module(LearningModule(QLearning(q)), sample=Transition(0, 0, 1, 1.0, 1, 1))


def test_check_module_catches_broken_modules() -> None:
    class Unserializable(PerceptionModule):
        def perceive(self, observation: Any) -> Any:
            return object()

    class Moody(PlanningModule):
        calls = 0

        def plan(self, features: Any) -> Any:
            self.calls += 1
            return self.calls  # ignores the seed: differs between calls

    class AsyncDisagrees(PerceptionModule):
        def perceive(self, observation: Any) -> Any:
            return 1

        async def aperceive(self, observation: Any) -> Any:
            return 2

    class BadReward(ExecutionModule):
        def execute(self, action: Any) -> Any:
            return 0, None

    with pytest.raises(CheckError, match="not serializable"):
        check_module(Unserializable(), sample=1)
    with pytest.raises(CheckError, match="different actions"):
        check_module(Moody(), sample=1)
    with pytest.raises(CheckError, match="aperceive"):
        check_module(AsyncDisagrees(), sample=1)
    with pytest.raises(CheckError, match="reward"):
        check_module(BadReward(), sample=0)
    with pytest.raises(CheckError, match="sample"):
        check_module(PerceptionModule())
    with pytest.raises(CheckError, match="not a llmagentos module"):
        check_module(object())


def test_check_module_accepts_a_user_planner_with_reasons() -> None:
    class Reasoned(PlanningModule):
        def decide(self, features: Any) -> Decision:
            return Decision(features % 2, reason=f"parity of {features}")

    check_module(Reasoned(), sample=5)
