"""A run's seeds as Ray tasks: the same files as run here, one after another."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ARGS = ["examples/configs/taxi.toml", "--seeds", "2", "--train-episodes", "60",
        "--eval-episodes", "30", "--quiet"]  # fmt: skip


def llmagentos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmagentos", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def learned(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / "results.json").read_text())
    return {phase: (data[phase]["returns"], data[phase]["lengths"]) for phase in ("train", "eval")}


def test_seeds_on_ray_write_what_they_write_here(tmp_path: Path) -> None:
    here, there = tmp_path / "here", tmp_path / "ray"
    assert llmagentos("run", *ARGS, "-o", str(here)).returncode == 0
    done = llmagentos("run", *ARGS, "-o", str(there), "--ray", "local")
    assert done.returncode == 0, done.stderr[-3000:]
    for seed in ("seed-0", "seed-1"):
        assert learned(there / seed) == learned(here / seed)
        assert (
            json.loads((there / seed / "qtable.json").read_text())["values"]
            == json.loads((here / seed / "qtable.json").read_text())["values"]
        )
    assert learned(here / "seed-0") != learned(here / "seed-1")
    report = json.loads((there / "population.json").read_text())
    assert report["backend"] == "ray" and [m["seed"] for m in report["members"]] == [0, 1]
    assert {m["node"] for m in report["members"]} == {"127.0.0.1"}


def test_an_unreachable_head_fails_fast_and_names_the_address(tmp_path: Path) -> None:
    done = llmagentos("run", *ARGS, "-o", str(tmp_path), "--ray", "127.0.0.1:1")
    assert done.returncode == 1
    assert "no Ray cluster at 127.0.0.1:1" in done.stderr
    assert not (tmp_path / "seed-0" / "results.json").exists()
