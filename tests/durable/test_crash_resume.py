"""SIGKILL a durable run at random points, resume it, and compare with its fault-free twin.

Each worker is a real process running a seeded Q-learning agent on Taxi-v4 whose
every step also calls a side-effecting tool (an external SQLite ledger). After the
kills, every run must end with the same Q-table, returns and ledger as the twin that
ran without faults, and no tool call that completed before a kill may run again.
Both durability modes are run. A kill may not lose a step: when step k's tool call
has reached the ledger, steps 0..k-1 must be in the journal, and the restart must
replay exactly the steps the journal held after the kill.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llmagentos.durable import Journal, run_durable
from tests.durable.ledger_agent import build

WORKER = Path(__file__).with_name("ledger_agent.py")
EPISODES = 8
ROOT = Path(__file__).resolve().parents[2]


def _ledger(path: Path) -> tuple[dict[str, str], dict[str, int]]:
    db = sqlite3.connect(path)
    entries = dict(db.execute("select key, entry from entries").fetchall())
    counts: dict[str, int] = {}
    for (key,) in db.execute("select key from invocations"):
        counts[key] = counts.get(key, 0) + 1
    db.close()
    return entries, counts


def _by_position(entries: dict[str, str]) -> dict[str, str]:
    return {key.split("/", 1)[1]: entry for key, entry in entries.items()}


def _twin(tmp: Path, seed: int) -> tuple[dict[str, Any], dict[str, str]]:
    agent, q = build(tmp / "twin-ledger.db", seed=seed)
    result = run_durable(agent, tmp / "twin.db", EPISODES, seed=seed, max_steps=60)
    assert result.completed
    entries, counts = _ledger(tmp / "twin-ledger.db")
    assert set(counts.values()) == {1}
    returns = [e.total_reward for e in result.run.episodes]
    return {"returns": returns, "q": q.to_dict()}, entries


def _start(tmp: Path, seed: int, slow: float, durability: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(WORKER), str(tmp / "run.db"), str(tmp / "ledger.db"),
            str(tmp / "out.json"), str(seed), str(EPISODES), "--slow", str(slow),
            "--durability", durability]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _journal_progress(path: Path) -> tuple[int, list[str]]:
    if not path.exists():
        return 0, []
    with Journal(path) as journal:
        return journal.step_count(), journal.effect_keys("done")


def _last_started_step(ledger: Path) -> int:
    """The highest step position whose tool call reached the ledger (-1: none)."""
    positions = [int(key.rsplit("/", 1)[1].split(".")[0]) for key in _ledger(ledger)[1]]
    return max(positions, default=-1)


@pytest.mark.parametrize("durability", ["process", "power_loss"])
@pytest.mark.parametrize(
    ("seed", "slow"), [(seed, 0.004 if seed % 2 else 0.0) for seed in range(1, 5)]
)
def test_killed_runs_finish_like_their_fault_free_twin(
    tmp_path: Path, seed: int, slow: float, durability: str
):
    (tmp_path / "twin").mkdir()
    expected, twin_entries = _twin(tmp_path / "twin", seed)
    rng = random.Random(seed)
    # Per kill: the calls done by then, and how often each had run by then.
    snapshots: list[tuple[list[str], dict[str, int]]] = []
    kills = 0
    progress = []
    for _attempt in range(12):
        worker = _start(tmp_path, seed, slow, durability)
        if kills < 3:
            # Wait until the run is under way (past its imports), then kill at a random point.
            deadline = time.monotonic() + 30
            before = _journal_progress(tmp_path / "run.db")[0]
            while time.monotonic() < deadline and worker.poll() is None:
                if _journal_progress(tmp_path / "run.db")[0] > before:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.6))
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=30)
                kills += 1
                steps, done = _journal_progress(tmp_path / "run.db")
                # Step k's call ran, so step k-1 had finished: it must be in the journal.
                assert steps >= _last_started_step(tmp_path / "ledger.db"), "a step was lost"
                progress.append(steps)
                snapshots.append((done, _ledger(tmp_path / "ledger.db")[1]))
                continue
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()
        break
    else:
        pytest.fail("the run never finished")
    assert kills >= 1, "the run ended before any kill landed"
    assert progress == sorted(progress)  # every restart went on from where the last stopped

    final = json.loads((tmp_path / "out.json").read_text())
    assert final["state"] == "completed"
    assert final["replayed"] == progress[-1]  # the restart found every step the kill left
    assert final["returns"] == expected["returns"]
    assert final["q"] == expected["q"]
    entries, counts = _ledger(tmp_path / "ledger.db")
    # The world ends exactly as without faults: the same entries at the same positions
    # (keys are <run id>/<agent>/<position>; the twin is another run, with another id).
    with Journal(tmp_path / "run.db") as journal:
        run_id = journal.run_id
    assert {key.split("/", 1)[0] for key in entries} == {run_id}
    assert _by_position(entries) == _by_position(twin_entries)
    # A call recorded as done before a kill never ran again after it.
    for done, counts_then in snapshots:
        assert done, "each kill landed after some calls completed"
        repeated = [key for key in done if counts[key] != counts_then[key]]
        assert not repeated, f"completed calls ran again after a restart: {repeated[:5]}"
    # At most the one call in flight at each kill ran twice (and the ledger kept it once).
    assert sum(counts.values()) - len(counts) <= kills
