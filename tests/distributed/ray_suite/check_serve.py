"""Module services on Ray Serve: reached like an HTTP module service, same returns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos import Agent
from llmagentos._processes import free_port
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.distributed.serve import ServeSettings, serve_modules, stop_serving
from llmagentos.exceptions import ConfigError
from llmagentos.service import remote_modules

CONFIG = Path("examples/configs/taxi.toml")
EPISODES = 4


@pytest.fixture(scope="module")
def planner_url(ray_cluster: Any) -> Iterator[str]:
    url = serve_modules(CONFIG, kinds=["planning", "learning"], port=free_port(),
                        settings=ServeSettings(cpus=0.5, max_ongoing_requests=8))  # fmt: skip
    yield url
    stop_serving()


def test_an_agent_with_its_planner_on_serve_gets_the_in_process_returns(planner_url: str) -> None:
    local = build_agent(load_config(CONFIG))
    expected = [e.total_reward for e in local.agent.run(EPISODES, seed=0, max_steps=100).episodes]
    built = build_agent(load_config(CONFIG))
    planning, learning = remote_modules(planner_url, "planning", "learning")
    agent = Agent(built.agent.perception_module, planning, built.agent.execution_module, learning)
    result = agent.run(EPISODES, seed=0, max_steps=100)
    assert [e.total_reward for e in result.episodes] == expected
    served = httpx.get(f"{planner_url}/v1/sessions/{planning.client.session}/qtable").json()
    assert local.q_table is not None and served["values"] == local.q_table.to_dict()["values"]


def test_the_deployment_answers_health_and_bad_input_as_the_service_does(planner_url: str) -> None:
    assert httpx.get(f"{planner_url}/healthz").status_code == 200
    bad = httpx.post(f"{planner_url}/v1/planning/decide", json={"session": "s", "features": {}})
    assert 400 <= bad.status_code < 500, bad.text
    assert httpx.post(f"{planner_url}/v1/perception/perceive", json={}).status_code == 404


def test_serve_settings_are_checked_before_deploying() -> None:
    for settings, field in [
        (ServeSettings(num_replicas=2), "state_store"),
        (ServeSettings(autoscaling={"min_replicas": 1, "max_replicas": 3}), "state_store"),
        (ServeSettings(max_ongoing_requests=0), "max_ongoing_requests"),
        (ServeSettings(num_replicas=0), "num_replicas"),
    ]:
        with pytest.raises(ConfigError) as caught:
            serve_modules(CONFIG, settings=settings)
        assert caught.value.field == field
    with pytest.raises(ConfigError) as caught:
        serve_modules(CONFIG, kinds=["planing"])
    assert caught.value.field == "kinds"
