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
@pytest.mark.parametrize("algorithm", ["sarsa", "expected_sarsa"])
def test_sarsa_variants_also_solve_cliffwalking(algorithm: str) -> None:
    data = load_config(CONFIGS / "cliffwalking.toml").model_dump()
    data["agent"]["learning"]["type"] = algorithm
    # On-policy learners take the safe path while they explore: let epsilon fade to 0.
    data["agent"]["planning"]["epsilon"] = {
        "type": "linear",
        "start": 0.2,
        "end": 0.0,
        "duration": 400,
        "per": "episode",
    }
    data["train"]["episodes"] = 600
    config = parse_config(data)
    result = _train_and_evaluate(config, eval_episodes=1)
    assert result.returns == [-13.0]
