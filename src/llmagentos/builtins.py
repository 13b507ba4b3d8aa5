"""The built-in registry entries: tabular modules and components by name.

Imported by the registry on first use, so ``import llmagentos`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmagentos.envs.text_maze import register_text_mazes
from llmagentos.exceptions import ConfigError
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.hybrid_planning import hybrid_planning
from llmagentos.modules.learning import LearningModule, ScaledReward
from llmagentos.modules.llm_planning import llm_planning
from llmagentos.modules.perception import (
    BinningExtractor,
    DiscreteExtractor,
    IdentityExtractor,
    PerceptionModule,
)
from llmagentos.modules.planning import PlanningModule
from llmagentos.modules.tool_feedback import (
    OutcomeRecorder,
    TestPassRateReward,
    ToolOutcomeFeedback,
    ToolSuccessReward,
)
from llmagentos.registration import registry
from llmagentos.rl.qtable import QTable
from llmagentos.rl.schedules import ScheduleLike
from llmagentos.rl.selectors import (
    EpsilonGreedySelector,
    GreedySelector,
    RandomSelector,
    SoftmaxSelector,
)
from llmagentos.rl.td import ExpectedSarsa, QLearning, Sarsa


def _require(value: Any, name: str, why: str) -> Any:
    if value is None:
        raise ConfigError(name, why)
    return value


# -- perception -------------------------------------------------------------------------


def identity_perception() -> PerceptionModule:
    """Observations are the features."""
    return PerceptionModule(extractor=IdentityExtractor())


def discrete_perception() -> PerceptionModule:
    """A discrete observation becomes an integer state."""
    return PerceptionModule(extractor=DiscreteExtractor())


def binning_perception(
    *,
    observation_space: Any = None,
    bins: int | list[int] = 10,
    low: list[float] | None = None,
    high: list[float] | None = None,
) -> PerceptionModule:
    """A continuous (Box) observation cut into bins, as one integer state."""
    if low is None or high is None:
        space = _require(observation_space, "low", "give low and high (no Box space to read)")
        low = [float(x) for x in space.low] if low is None else low
        high = [float(x) for x in space.high] if high is None else high
    if any(abs(x) == float("inf") for x in [*low, *high]):
        raise ConfigError("low", "the space is unbounded: give finite low and high")
    return PerceptionModule(extractor=BinningExtractor(low=low, high=high, bins=bins))


# -- planning ---------------------------------------------------------------------------


def random_planning(*, n_actions: int, seed: int | None = None) -> PlanningModule:
    """Uniformly random actions."""
    return PlanningModule(RandomSelector(n_actions, seed=seed))


def greedy_planning(*, q_table: QTable, seed: int | None = None) -> PlanningModule:
    """The best action by Q-value."""
    return PlanningModule(GreedySelector(q_table, seed=seed))


def epsilon_greedy_planning(
    *, q_table: QTable, epsilon: ScheduleLike = 0.1, seed: int | None = None
) -> PlanningModule:
    """Random with probability epsilon (a number or schedule), else the best by Q-value."""
    return PlanningModule(EpsilonGreedySelector(q_table, epsilon=epsilon, seed=seed))


def softmax_planning(
    *, q_table: QTable, temperature: ScheduleLike = 1.0, seed: int | None = None
) -> PlanningModule:
    """Boltzmann exploration over Q-values."""
    return PlanningModule(SoftmaxSelector(q_table, temperature=temperature, seed=seed))


# -- execution --------------------------------------------------------------------------


def env_execution(*, env: Any) -> ExecutionModule:
    """Acts in the configured environment."""
    return ExecutionModule(env)


# -- learning ---------------------------------------------------------------------------


def _reward(reward_scale: float, reward_offset: float) -> ScaledReward | None:
    if reward_scale == 1.0 and reward_offset == 0.0:
        return None
    return ScaledReward(scale=reward_scale, offset=reward_offset)


def no_learning() -> LearningModule:
    """Learns nothing (evaluation only)."""
    return LearningModule()


def q_learning(
    *,
    q_table: QTable,
    alpha: ScheduleLike = 0.1,
    gamma: float = 0.99,
    reward_scale: float = 1.0,
    reward_offset: float = 0.0,
) -> LearningModule:
    """Tabular Q-learning with the seed's update rule."""
    return LearningModule(
        QLearning(q_table, alpha=alpha, gamma=gamma),
        reward_fn=_reward(reward_scale, reward_offset),
    )


def sarsa(
    *,
    q_table: QTable,
    alpha: ScheduleLike = 0.1,
    gamma: float = 0.99,
    reward_scale: float = 1.0,
    reward_offset: float = 0.0,
) -> LearningModule:
    """Tabular SARSA (on-policy)."""
    return LearningModule(
        Sarsa(q_table, alpha=alpha, gamma=gamma), reward_fn=_reward(reward_scale, reward_offset)
    )


def expected_sarsa(
    *,
    q_table: QTable,
    alpha: ScheduleLike = 0.1,
    gamma: float = 0.99,
    epsilon: ScheduleLike = 0.1,
    reward_scale: float = 1.0,
    reward_offset: float = 0.0,
) -> LearningModule:
    """Tabular Expected SARSA under an epsilon-greedy policy."""
    return LearningModule(
        ExpectedSarsa(q_table, alpha=alpha, gamma=gamma, epsilon=epsilon),
        reward_fn=_reward(reward_scale, reward_offset),
    )


_BUILTINS: list[tuple[str, str, Callable[..., Any]]] = [
    ("perception", "identity", identity_perception),
    ("perception", "discrete", discrete_perception),
    ("perception", "binning", binning_perception),
    ("planning", "random", random_planning),
    ("planning", "greedy", greedy_planning),
    ("planning", "epsilon_greedy", epsilon_greedy_planning),
    ("planning", "softmax", softmax_planning),
    ("planning", "llm", llm_planning),
    ("planning", "hybrid", hybrid_planning),
    ("execution", "env", env_execution),
    ("learning", "none", no_learning),
    ("learning", "q_learning", q_learning),
    ("learning", "sarsa", sarsa),
    ("learning", "expected_sarsa", expected_sarsa),
    ("selector", "random", RandomSelector),
    ("selector", "greedy", GreedySelector),
    ("selector", "epsilon_greedy", EpsilonGreedySelector),
    ("selector", "softmax", SoftmaxSelector),
    ("optimizer", "q_learning", QLearning),
    ("optimizer", "sarsa", Sarsa),
    ("optimizer", "expected_sarsa", ExpectedSarsa),
    ("extractor", "identity", IdentityExtractor),
    ("extractor", "discrete", DiscreteExtractor),
    ("extractor", "binning", BinningExtractor),
    ("reward", "scaled", ScaledReward),
    ("reward", "test_pass_rate", TestPassRateReward),
    ("reward", "tool_success", ToolSuccessReward),
    ("feedback", "tool_outcome", ToolOutcomeFeedback),
    ("optimizer", "recorder", OutcomeRecorder),
]

for _kind, _name, _factory in _BUILTINS:
    registry.register(_kind, _name, _factory)

register_text_mazes()
