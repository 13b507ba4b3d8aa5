"""Episodes on Ray workers: the same episodes as the serial run, progress, merges, errors."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import pytest

from llmagentos import Agent
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.distributed import NotSerializable
from llmagentos.distributed.merge import find_q_tables
from llmagentos.exceptions import ConfigError
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.planning import PlanningModule
from llmagentos.types import EpisodeResult, RunResult

TAXI = load_config("examples/configs/taxi.toml")


def taxi() -> Agent:
    return build_agent(TAXI).agent


def same(result: RunResult) -> list[tuple[Any, ...]]:
    """What must match between runs (not the seconds each took)."""
    return [
        (e.episode, e.total_reward, e.length, e.terminated, e.truncated, e.seed, e.training)
        for e in result.episodes
    ]


@pytest.fixture(scope="module")
def trained() -> Agent:
    agent = taxi()
    agent.run(600, seed=0, train=True)
    return agent


@pytest.mark.parametrize("workers", [1, 2, 4])  # 4: more workers than CPUs, each a share
def test_evaluation_on_ray_equals_the_serial_run(
    ray_cluster: Any, trained: Agent, workers: int
) -> None:
    start = trained.episode
    serial = trained.run(60, seed=100, train=False, reseed="each")
    trained.episode = start
    seen: list[EpisodeResult] = []
    remote = trained.run(
        60, seed=100, train=False, backend="ray", workers=workers, on_episode=seen.append
    )
    assert same(remote) == same(serial)
    assert len({e.total_reward for e in serial.episodes}) > 1  # not trivially equal
    assert sorted(e.episode for e in seen) == [e.episode for e in serial.episodes]
    assert trained.episode == start + 60 and trained.training  # the mode is restored


def test_training_on_one_worker_equals_the_serial_run(ray_cluster: Any) -> None:
    serial, remote = taxi(), taxi()
    first = serial.run(80, seed=0, train=True, reseed="each")
    second = remote.run(80, seed=0, train=True, backend="ray", workers=1)
    assert same(first) == same(second)
    [a], [b] = find_q_tables(serial), find_q_tables(remote)
    assert a.rows == b.rows and a.visits == b.visits
    assert serial.planning_module.state_dict() == remote.planning_module.state_dict()


def test_training_on_two_workers_merges_and_is_reproducible(ray_cluster: Any) -> None:
    runs = []
    for _ in range(2):
        agent = taxi()
        result = agent.run(1500, seed=0, train=True, backend="ray", workers=2)
        [table] = find_q_tables(agent)
        runs.append((same(result), table.rows, sum(map(sum, table.visits))))
        # The selector's schedule counted every worker's episodes and steps.
        steps = sum(e.length for e in result.episodes)
        assert agent.planning_module.state_dict()["2"] == {"steps": steps, "episodes": 1500}
    assert runs[0] == runs[1]
    assert runs[0][2] == steps  # every step on every worker is a visit in the merged table
    evaluation = agent.run(100, seed=10_000, train=False, reseed="each")
    assert sum(e.total_reward for e in evaluation.episodes) / 100 > 5  # it learned Taxi


class LockedPlanner(PlanningModule):
    def __init__(self) -> None:
        super().__init__()
        self.guard = {"lock": threading.Lock()}

    def plan(self, features: Any) -> int:
        return 0


def test_a_module_that_cannot_be_pickled_is_named_before_anything_is_sent() -> None:
    built = build_agent(TAXI)
    agent = Agent(
        built.agent.perception_module, LockedPlanner(), built.agent.execution_module,
        LearningModule(),
    )  # fmt: skip
    with pytest.raises(NotSerializable) as caught:
        agent.run(3, seed=0, train=False, backend="ray")
    assert caught.value.path == "planning.guard['lock']"
    assert "LockedPlanner" in str(caught.value) and "lock" in caught.value.reason


def test_bad_settings_are_refused_with_the_field_named() -> None:
    agent = taxi()
    for kwargs, field in [
        ({"backend": "ray", "reseed": "first"}, "reseed"),
        ({"backend": "ray", "workers": 0}, "workers"),
        ({"backend": "spark"}, "backend"),
        ({"workers": 2}, "backend"),
    ]:
        with pytest.raises(ConfigError) as caught:
            agent.run(2, seed=0, **kwargs)
        assert caught.value.field == field


def test_ray_listens_on_loopback_only(ray_cluster: Any) -> None:
    @ray_cluster.remote
    def ping() -> int:
        return 1

    assert ray_cluster.get(ping.remote()) == 1
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True)
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.stdout.splitlines()}
    assert addresses, listening.stdout
    assert addresses <= {"127.0.0.1", "[::ffff:127.0.0.1]"}, listening.stdout


def test_a_run_ends_its_workers(ray_cluster: Any, trained: Agent) -> None:
    from llmagentos.distributed.workers import NAME_PREFIX

    trained.run(10, seed=0, train=False, backend="ray", workers=2)

    @ray_cluster.remote(num_cpus=2)
    def both_cpus() -> str:
        return "free"  # runs only once no worker holds a CPU any more

    assert ray_cluster.get(both_cpus.remote(), timeout=60) == "free"
    names = (n["name"] if isinstance(n, dict) else n for n in ray_cluster.util.list_named_actors())
    assert not [name for name in names if name.startswith(NAME_PREFIX)]
