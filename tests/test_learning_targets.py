"""It must actually learn: greedy evaluation of the shipped configs, fixed seeds.

Each test trains the agent described by an example config through the full Agent (the
same path as ``llmagentos run``) and evaluates it greedily. Each takes well under 60 s
on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmagentos.build import build_agent
from llmagentos.config import RunConfig, load_config, parse_config
from llmagentos.types import RunResult

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"


def _train_and_evaluate(config: RunConfig, *, eval_episodes: int) -> RunResult:
    assert config.train is not None and config.eval is not None
    agent = build_agent(config).agent
    agent.run(config.train.episodes, seed=config.train.seed, max_steps=config.train.max_steps)
    return agent.run(
        eval_episodes, seed=config.eval.seed, max_steps=config.eval.max_steps, train=False
    )


@pytest.mark.timeout(60)
def test_taxi_mean_greedy_return_reaches_7_8_over_1000_episodes() -> None:
    result = _train_and_evaluate(load_config(CONFIGS / "taxi.toml"), eval_episodes=1000)
    assert len(result.episodes) == 1000
    assert result.mean_return >= 7.8, result.mean_return


@pytest.mark.timeout(60)
def test_cliffwalking_greedy_return_is_optimal() -> None:
    result = _train_and_evaluate(load_config(CONFIGS / "cliffwalking.toml"), eval_episodes=3)
    assert result.returns == [-13.0, -13.0, -13.0]


@pytest.mark.timeout(60)
def test_frozenlake_slippery_success_rate_reaches_0_70_over_2000_episodes() -> None:
    config = load_config(CONFIGS / "frozenlake.yaml")
    assert config.env.kwargs.get("is_slippery", True) is True
    assert config.env.kwargs.get("map_name", "4x4") == "4x4"
    result = _train_and_evaluate(config, eval_episodes=2000)
    assert result.success_rate >= 0.70, result.success_rate


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "floor"), [("taxi_sarsa.toml", 7.5), ("taxi_expected_sarsa.yaml", 7.8)]
)
def test_sarsa_and_expected_sarsa_learn_taxi(name: str, floor: float) -> None:
    config = load_config(CONFIGS / name)
    assert config.agent.learning.type in ("sarsa", "expected_sarsa")
    result = _train_and_evaluate(config, eval_episodes=1000)
    assert result.mean_return >= floor, result.mean_return


@pytest.mark.timeout(60)
def test_cliff_q_learning_takes_the_edge_while_sarsa_learns_the_safe_path() -> None:
    """Sutton and Barto's example 6.6: with constant exploration (epsilon = 0.1),
    off-policy Q-learning learns the optimal path along the cliff but falls in while
    exploring; on-policy SARSA learns a longer, safer path and earns more online."""
    greedy: dict[str, float] = {}
    online: dict[str, float] = {}
    for algorithm in ("q_learning", "sarsa", "expected_sarsa"):
        config = parse_config(
            {
                "env": {"id": "CliffWalking-v1", "max_episode_steps": 200},
                "agent": {
                    "planning": {"type": "epsilon_greedy", "epsilon": 0.1},
                    "learning": {"type": algorithm, "alpha": 0.5, "gamma": 1.0},
                },
                "train": {"episodes": 500, "seed": 0},
                "eval": {"episodes": 1, "seed": 0, "max_steps": 200},
            }
        )
        agent = build_agent(config).agent
        training = agent.run(500, seed=0)
        online[algorithm] = sum(training.returns[-100:]) / 100
        greedy[algorithm] = agent.run(1, seed=0, max_steps=200, train=False).returns[0]
    assert greedy["q_learning"] == -13.0
    assert greedy["sarsa"] < -13.0 and greedy["expected_sarsa"] < -13.0  # a safer detour
    assert greedy["sarsa"] > -30.0 and greedy["expected_sarsa"] > -30.0  # still reaches goal
    assert online["sarsa"] > online["q_learning"]
    assert online["expected_sarsa"] > online["q_learning"]
