"""Modules in a Ray actor, reached by handle: the same returns as in-process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from llmagentos import Agent
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.distributed.actor_modules import actor_modules
from llmagentos.exceptions import ConfigError, ModuleError

CONFIG = Path("examples/configs/taxi.toml")
EPISODES = 4


def local_run() -> tuple[list[float], dict[str, Any]]:
    built = build_agent(load_config(CONFIG))
    result = built.agent.run(EPISODES, seed=0, max_steps=100)
    assert built.q_table is not None
    return [e.total_reward for e in result.episodes], built.q_table.to_dict()


def test_a_planner_and_learner_in_an_actor_give_the_in_process_returns(ray_cluster: Any) -> None:
    expected, expected_q = local_run()
    built = build_agent(load_config(CONFIG))
    planning, learning = actor_modules(CONFIG, "planning", "learning", cpus=0.5)
    agent = Agent(built.agent.perception_module, planning, built.agent.execution_module, learning)
    result = agent.run(EPISODES, seed=0, max_steps=100)
    assert [e.total_reward for e in result.episodes] == expected
    table = ray_cluster.get(planning.client.actor.qtable.remote(planning.client.session))
    assert table["values"] == expected_q["values"]
    assert learning.client.session == planning.client.session


def test_all_four_in_an_actor_sync_and_async(ray_cluster: Any) -> None:
    expected, _ = local_run()
    modules = actor_modules(CONFIG, "perception", "planning", "execution", "learning", cpus=0.5)
    assert [
        e.total_reward for e in Agent(*modules).run(EPISODES, seed=0, max_steps=100).episodes
    ] == expected
    others = actor_modules(CONFIG, "perception", "planning", "execution", "learning",
                           actor=modules[0].client.actor)  # fmt: skip
    assert others[0].client.session != modules[0].client.session  # its own state

    async def run() -> list[float]:
        outcome = await Agent(*others).arun(EPISODES, seed=0, max_steps=100)
        return [e.total_reward for e in outcome.episodes]

    assert asyncio.run(run()) == expected


def test_bad_calls_are_typed_errors(ray_cluster: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        actor_modules(CONFIG, "planing")
    assert caught.value.field == "kinds"
    [planning] = actor_modules(CONFIG, "planning", cpus=0.5)
    with pytest.raises(ModuleError) as refused:
        planning.decide("not a state")
    assert "planning" in str(refused.value)
