"""Workers killed mid-run (Ray's kill API, SIGKILL of the process): the run completes
with every episode once, and the same episodes as a run nothing happened to."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.distributed.merge import find_q_tables
from llmagentos.types import EpisodeResult, RunResult

TAXI = load_config("examples/configs/taxi.toml")


def same(result: RunResult) -> list[tuple[Any, ...]]:
    return [(e.episode, e.total_reward, e.length, e.seed) for e in result.episodes]


def kill_with_ray(ray: Any) -> None:
    [name, *_] = sorted(
        n["name"] if isinstance(n, dict) else n for n in ray.util.list_named_actors()
        if (n["name"] if isinstance(n, dict) else n).startswith("llmagentos-episodes-")
    )  # fmt: skip
    ray.kill(ray.get_actor(name))


def kill_a_process(prefix: bytes) -> None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if command.startswith(prefix):
            os.kill(int(entry.name), signal.SIGKILL)
            return
    raise AssertionError(f"no {prefix!r} process found")


def kill_a_worker_process(ray: Any) -> None:
    kill_a_process(b"ray::EpisodeWorker")  # an actor (training)


def kill_a_task_process(ray: Any) -> None:
    kill_a_process(b"ray::evaluate_chunk")  # a task's worker, while it runs (evaluation)


def once(action: Any, ray: Any, seen: list[EpisodeResult]) -> Any:
    def on_episode(episode: EpisodeResult) -> None:
        seen.append(episode)
        if len(seen) == 1:
            action(ray)

    return on_episode


def test_evaluation_survives_a_dead_worker(ray_cluster: Any) -> None:
    kill = kill_a_task_process
    agent = build_agent(TAXI).agent  # untrained: long episodes, so the kill lands mid-run
    calm = agent.run(300, seed=5, train=False, reseed="each")
    agent.episode -= 300
    seen: list[EpisodeResult] = []
    hit = agent.run(
        300, seed=5, train=False, backend="ray", workers=2,
        on_episode=once(kill, ray_cluster, seen),
    )  # fmt: skip
    assert hit.workers_replaced == 1
    assert same(hit) == same(calm)
    assert sorted(e.episode for e in seen) == [e.episode for e in calm.episodes]  # each once


@pytest.mark.parametrize("kill", [kill_with_ray, kill_a_worker_process])
def test_training_survives_a_dead_worker_with_the_same_tables(ray_cluster: Any, kill: Any) -> None:
    calm_agent, hit_agent = build_agent(TAXI).agent, build_agent(TAXI).agent
    calm = calm_agent.run(400, seed=0, train=True, backend="ray", workers=2)
    seen: list[EpisodeResult] = []
    hit = hit_agent.run(
        400, seed=0, train=True, backend="ray", workers=2,
        on_episode=once(kill, ray_cluster, seen),
    )  # fmt: skip
    assert hit.workers_replaced == 1
    assert same(hit) == same(calm)
    assert len(seen) == 400 and len({e.episode for e in seen}) == 400
    [a], [b] = find_q_tables(calm_agent), find_q_tables(hit_agent)
    assert a.rows == b.rows and a.visits == b.visits
