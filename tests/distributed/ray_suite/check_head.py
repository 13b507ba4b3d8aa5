"""A cluster of two processes joined by address: a head started with ``ray start --head``
and a driver that reaches it with ``--ray HOST:PORT``."""

from __future__ import annotations

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
ARGS = ["examples/configs/taxi.toml", "--seeds", "2", "--train-episodes", "150",
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
            env=os.environ | TOKEN,
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
            process.wait(timeout=60)
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
