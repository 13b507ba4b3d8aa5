"""Workers killed mid-run (Ray's kill API, SIGKILL of the process): the run completes
with every episode once, and the same episodes as a run nothing happened to."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.distributed.merge import find_q_tables
from llmagentos.distributed.workers import NAME_PREFIX
from llmagentos.types import EpisodeResult, RunResult

TAXI = load_config("examples/configs/taxi.toml")


def same(result: RunResult) -> list[tuple[Any, ...]]:
    return [(e.episode, e.total_reward, e.length, e.seed) for e in result.episodes]


def named_workers(ray: Any) -> set[str]:
    names = (n["name"] if isinstance(n, dict) else n for n in ray.util.list_named_actors())
    return {name for name in names if name.startswith(NAME_PREFIX)}


def live_actor(ray: Any, before: set[str]) -> Any:
    """One of this run's actors (named since ``before``) that answers now (idle between
    its chunk and the round's end), with its process id."""
    handles = []
    for name in sorted(named_workers(ray) - before):
        try:
            handles.append(ray.get_actor(name))
        except ValueError:
            continue  # ended meanwhile
    refs = {handle.pid.remote(): handle for handle in handles}
    ready, _ = ray.wait(list(refs), num_returns=1, timeout=60)
    assert ready, "no worker of this run answered"
    return refs[ready[0]], ray.get(ready[0])


def kill_with_ray(ray: Any, before: set[str]) -> None:
    handle, _ = live_actor(ray, before)
    ray.kill(handle)


def kill_a_worker_process(ray: Any, before: set[str]) -> None:
    _, pid = live_actor(ray, before)
    os.kill(pid, signal.SIGKILL)


def kill_a_task_process(ray: Any, before: set[str]) -> None:
    """SIGKILL a worker while it runs an evaluation task (between two chunks no worker
    does, so look again for a few seconds)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"ray::evaluate_chunk"):
                os.kill(int(entry.name), signal.SIGKILL)
                return
        time.sleep(0.005)
    raise AssertionError("no worker was running an evaluation task")


class Once:
    """An ``on_episode`` that starts ``action`` in a thread when the first episode arrives:
    the run's loop goes on submitting work meanwhile, so there is a worker to kill."""

    def __init__(self, action: Any, ray: Any, seen: list[EpisodeResult]) -> None:
        self.action, self.ray, self.seen = action, ray, seen
        self.before = named_workers(ray)
        self.errors: list[BaseException] = []
        self.thread: threading.Thread | None = None

    def __call__(self, episode: EpisodeResult) -> None:
        self.seen.append(episode)
        if self.thread is None:
            self.thread = threading.Thread(target=self._act, daemon=True)
            self.thread.start()

    def _act(self) -> None:
        try:
            self.action(self.ray, self.before)
        except BaseException as err:
            self.errors.append(err)

    def done(self) -> None:
        """The action ran and did what it does (call after the run)."""
        assert self.thread is not None, "no episode arrived"
        self.thread.join(timeout=30)
        if self.errors:
            raise self.errors[0]


def test_evaluation_survives_a_dead_worker(ray_cluster: Any) -> None:
    kill = kill_a_task_process
    agent = build_agent(TAXI).agent  # untrained: long episodes, so the kill lands mid-run
    # Enough episodes that the kill lands mid-run even on a busy machine.
    calm = agent.run(800, seed=5, train=False, reseed="each")
    agent.episode -= 800
    seen: list[EpisodeResult] = []
    action = Once(kill, ray_cluster, seen)
    hit = agent.run(800, seed=5, train=False, backend="ray", workers=2, on_episode=action)
    action.done()
    assert hit.workers_replaced == 1
    assert same(hit) == same(calm)
    assert sorted(e.episode for e in seen) == [e.episode for e in calm.episodes]  # each once


@pytest.mark.parametrize("kill", [kill_with_ray, kill_a_worker_process])
def test_training_survives_a_dead_worker_with_the_same_tables(ray_cluster: Any, kill: Any) -> None:
    calm_agent, hit_agent = build_agent(TAXI).agent, build_agent(TAXI).agent
    calm = calm_agent.run(400, seed=0, train=True, backend="ray", workers=2)
    seen: list[EpisodeResult] = []
    action = Once(kill, ray_cluster, seen)
    hit = hit_agent.run(400, seed=0, train=True, backend="ray", workers=2, on_episode=action)
    action.done()
    assert hit.workers_replaced == 1
    assert same(hit) == same(calm)
    assert len(seen) == 400 and len({e.episode for e in seen}) == 400
    [a], [b] = find_q_tables(calm_agent), find_q_tables(hit_agent)
    assert a.rows == b.rows and a.visits == b.visits
