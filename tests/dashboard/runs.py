"""Run folders for the explain and dashboard tests: real runs, and broken ones.

- ``hybrid``: TextMaze with the hybrid planner over a stand-in model that reads the
  observation (``toward`` of bench/_standins.py), spans and prompts recorded;
- ``ledger``: a durable Taxi run whose refunds need a human's approval, started
  from a config (so ``runs resume`` can continue it);
- ``taxi_live``: a long Taxi run, for a run that is still going.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from llmagentos.config import parse_config
from llmagentos.experiment import run_experiment
from llmagentos.registration import registry
from llmagentos.safety import ToolPolicy
from llmagentos.tools.gate import ToolGate
from tests.durable.ledger_agent import LedgerExecution, ledger_tools

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from _standins import stand_in  # noqa: E402


def _standin_model(name: str, **_: Any) -> Any:
    return stand_in(name)


def hybrid_run(out: Path, *, episodes: int = 6) -> Path:
    """A finished hybrid run with spans and recorded prompts in ``out``."""
    registry.register("model", "standin", _standin_model, overwrite=True)
    config = parse_config({
        "name": "maze_hybrid",
        "env": {"id": "TextMaze-v0"},
        "agent": {
            "planning": {"type": "hybrid", "model": "standin:wrong30", "trust_after": 2},
            "learning": {"type": "q_learning", "alpha": 0.5, "gamma": 0.99},
        },
        "baseline": {"planning": {"type": "epsilon_greedy", "epsilon": 0.05},
                     "learning": {"type": "q_learning", "alpha": 0.5, "gamma": 0.99}},
        "train": {"episodes": episodes, "seed": 0},
        "eval": {"episodes": 2, "seed": 100},
        "output": {"dir": str(out), "trace_train_every": 1, "trace_eval_episodes": 2,
                   "plot": False},
        "telemetry": {"exporter": "file", "record_content": True},
    })  # fmt: skip
    run_experiment(config)
    return out


def ledger_execution(env: Any = None, *, ledger: str, refund_every: int = 40) -> LedgerExecution:
    """Taxi that books every step in a ledger and asks for a refund every ``refund_every``
    steps; refunds need approval (a config's ``[agent.execution]`` type)."""
    policy = ToolPolicy(allow=["ledger.*"], approve=["ledger.refund"])
    gate = ToolGate(ledger_tools(Path(ledger)), policy=policy)
    return LedgerExecution(gate, refund_every=refund_every)


def ledger_config(out: Path) -> Path:
    """A durable run's config that pauses at step 40 for a refund's approval."""
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": "ledger",
        "env": {"id": "Taxi-v4"},
        "agent": {"execution": {"type": "tests.dashboard.runs:ledger_execution",
                                "ledger": str(out.parent / f"{out.name}-ledger.db")}},
        "train": {"episodes": 1, "seed": 0, "max_steps": 60},
        "output": {"dir": str(out), "durable": True, "plot": False, "trace_train_every": 1},
    }))  # fmt: skip
    return path


def start_cli(*args: str, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    """``llmagentos ARGS`` in a process that can import this checkout and its tests."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    return subprocess.Popen(
        [sys.executable, "-m", "llmagentos", *args], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def taxi_config(out: Path, *, episodes: int = 200_000) -> Path:
    """A long Taxi run (seconds to minutes), traced every 50 episodes."""
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": "taxi_live", "env": {"id": "Taxi-v4"},
        "train": {"episodes": episodes, "seed": 0},
        "output": {"dir": str(out), "plot": False, "trace_train_every": 50},
    }))  # fmt: skip
    return path
