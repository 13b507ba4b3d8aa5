"""A cluster of two processes joined by address: a head started with ``ray start --head``
and a driver that reaches it with ``--ray HOST:PORT``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmagentos._processes import free_port

# Ray 2.60 turns token authentication on for a head it starts: the head and every
# process that joins it share one token.
TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
# A dead node is noticed after 5 missed health checks a second apart, within about
# 15 s (Ray's default: 30 s or more). Tighter (3 checks of 0.5 s) marked the head's
# own busy raylet dead on a loaded machine, which ended the head.
HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "2000",
          "RAY_health_check_failure_threshold": "5"}  # fmt: skip
ARGS = ["examples/configs/taxi.toml", "--seeds", "2", "--train-episodes", "60",
        "--eval-episodes", "20", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ray start --head --block`` in its own process group: stopped by signalling that
    group, not by ``ray stop`` (which would stop every Ray on the machine)."""
    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port = free_port()
    log = tmp_path_factory.mktemp("head") / "ray_start.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
             f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
             "--disable-usage-stats"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=os.environ | TOKEN | HEALTH,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the head did not listen within 90 s:\n{log.read_text()[-3000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)  # after a lost node Ray's own shutdown can take 30 s
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def llmagentos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmagentos", *args],
        capture_output=True, text=True, timeout=300, check=False, env=os.environ | TOKEN,
    )  # fmt: skip


def test_a_driver_joins_a_head_by_address_and_gets_the_local_results(
    head: str, tmp_path: Path
) -> None:
    here, there = tmp_path / "here", tmp_path / "head"
    assert llmagentos("run", *ARGS, "-o", str(here)).returncode == 0
    done = llmagentos("run", *ARGS, "-o", str(there), "--ray", head)
    assert done.returncode == 0, done.stderr[-3000:]
    for seed in ("seed-0", "seed-1"):
        mine = json.loads((here / seed / "results.json").read_text())
        theirs = json.loads((there / seed / "results.json").read_text())
        assert theirs["eval"]["returns"] == mine["eval"]["returns"]
        assert theirs["train"]["returns"] == mine["train"]["returns"]
    report = json.loads((there / "population.json").read_text())
    assert {m["node"] for m in report["members"]} == {"127.0.0.1"}


def test_episodes_on_the_head_equal_the_serial_ones(head: str) -> None:
    script = f"""
from llmagentos.build import build_agent
from llmagentos.config import load_config
agent = build_agent(load_config("examples/configs/taxi.toml")).agent
serial = agent.run(40, seed=3, train=False, reseed="each")
agent.episode -= 40
remote = agent.run(40, seed=3, train=False, backend="ray", address={head!r}, workers=2)
assert [e.total_reward for e in remote.episodes] == [e.total_reward for e in serial.episodes]
import ray
assert ray.get_runtime_context().gcs_address == {head!r}, ray.get_runtime_context().gcs_address
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False, env=os.environ | TOKEN)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def _ray_cli() -> str:
    return shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


def test_a_dead_node_s_episodes_and_sessions_move_on(head: str, tmp_path: Path) -> None:
    """A second node joins the head; its processes are SIGKILLed mid-run (the node is
    gone): its episodes run again on the head, and a module session whose host was there
    goes on from its store on the head."""
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        node = subprocess.Popen(
            [_ray_cli(), "start", f"--address={head}", "--block", "--node-ip-address=127.0.0.1",
             "--num-cpus=1", '--resources={"doomed": 1}', "--disable-usage-stats"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=os.environ | TOKEN,
        )  # fmt: skip
    script = f"""
import os, signal, time
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from llmagentos import Agent
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.distributed import connect
from llmagentos.distributed.actor_modules import actor_modules

ray = connect({head!r})
deadline = time.monotonic() + 60
while not [n for n in ray.nodes() if n["Alive"] and "doomed" in n["Resources"]]:
    assert time.monotonic() < deadline, "the second node did not join"
    time.sleep(0.5)
doomed = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "doomed" in n["Resources"])
config = load_config("examples/configs/taxi.toml")

def where(actor):
    return ray.get(actor.__ray_call__.remote(
        lambda self: __import__("ray").get_runtime_context().get_node_id()))

# A session whose planner and learner live on the doomed node, kept in a store.
reference = build_agent(config).agent.run(8, seed=0, max_steps=60)
built = build_agent(config)
planning, learning = actor_modules(
    config, "planning", "learning", cpus=0.5,
    state_store={str(tmp_path / "sessions.db")!r}, state_secret="s" * 32,
    ray_options={{"scheduling_strategy": NodeAffinitySchedulingStrategy(doomed, soft=True)}},
)
agent = Agent(built.agent.perception_module, planning, built.agent.execution_module, learning)
first = agent.run(4, seed=0, max_steps=60)
assert where(planning.client.actor) == doomed

# Evaluation on three workers (one on the doomed node); the node dies after 3 episodes.
evaluator = build_agent(config).agent
serial = evaluator.run(12, seed=5, train=False, reseed="each")
evaluator.episode -= 12
def killed(episode):
    if episode.episode == 2 + evaluator.episode + 1 and not killed.done:
        killed.done = True
        os.killpg({node.pid}, signal.SIGKILL)
killed.done = False
remote = evaluator.run(12, seed=5, train=False, backend="ray", workers=3, on_episode=killed)
assert killed.done
assert [e.total_reward for e in remote.episodes] == [e.total_reward for e in serial.episodes]
assert len({{e.episode for e in remote.episodes}}) == 12

# The session goes on where it was, on a live node.
deadline = time.monotonic() + 60
while any(n["Alive"] for n in ray.nodes() if n["NodeID"] == doomed):
    assert time.monotonic() < deadline, "the dead node was not noticed"
    time.sleep(0.5)
second = agent.run(4, seed=None, max_steps=60)
returns = [e.total_reward for e in first.episodes + second.episodes]
assert returns == [e.total_reward for e in reference.episodes], (returns, reference)
assert where(planning.client.actor) != doomed
print("ok", planning.client.retries, remote.workers_replaced)
"""
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=300, check=False, env=os.environ | TOKEN)  # fmt: skip
        assert done.returncode == 0 and "ok" in done.stdout, (
            done.stdout[-2000:] + done.stderr[-4000:] + log.read_text()[-2000:]
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=30)
