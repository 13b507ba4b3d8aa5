"""``llmagentos up`` with ``placement = "ray"``: the shipped example on Ray Serve, behind
the gateway; ``status`` shows the cluster and where each module runs; ``down`` ends it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmagentos._processes import free_port
from llmagentos.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "deploy"


def _deployment(tmp: Path) -> Path:
    text = (EXAMPLE / "maze_on_ray.toml").read_text()
    text = text.replace("port = 8080", "port = 0").replace(
        "serve_port = 8000", f"serve_port = {free_port()}"
    )
    text = text.replace('"maze_agent.toml"', json.dumps(str(EXAMPLE / "maze_agent.toml")))
    text = text.replace('"maze-ray-planning.db"', json.dumps(str(tmp / "planning.db")))
    path = tmp / "deploy.toml"
    path.write_text(text)
    return path


def test_up_on_ray_serves_the_agent_behind_the_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = tmp_path / "state"
    env = os.environ | {"LLMAGENTOS_STATE_SECRET": "s" * 32}
    up = subprocess.Popen(
        [sys.executable, "-m", "llmagentos", "up", str(_deployment(tmp_path)),
         "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    path = state_dir / "maze-ray.json"
    try:
        deadline = time.monotonic() + 240
        while not path.exists():
            if up.poll() is not None or time.monotonic() > deadline:
                output = up.stdout.read().decode() if up.stdout else ""
                pytest.fail(f"up did not come up: {output[-4000:]}")
            time.sleep(0.2)
        state = json.loads(path.read_text())
        assert state["placement"] == "ray"
        assert [p["role"] for p in state["processes"]] == ["gateway"]  # the rest is on Ray
        assert sorted(state["ray"]["urls"]) == ["execution", "learning", "perception", "planning"]

        run = subprocess.run(
            [sys.executable, str(EXAMPLE / "run_remote_agent.py"), state["gateway"], "2"],
            capture_output=True, text=True, timeout=300, check=False, env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.startswith("2 steps, return ") and "last action" in run.stdout

        capsys.readouterr()
        assert main(["status", "maze-ray", "--state-dir", str(state_dir)]) == 0
        shown = capsys.readouterr().out
        assert "Ray cluster" in shown and "where each module runs" in shown
        assert shown.count("planning replica") == 2
        for service in ("perception", "execution", "learning"):
            assert shown.count(f"{service} replica") == 1
        assert "kernel" in shown and "model host" in shown  # SmolLM2, loaded once here
        assert "127.0.0.1" in shown

        assert main(["down", "maze-ray", "--state-dir", str(state_dir)]) == 0
        assert up.wait(timeout=120) == 0
        assert not path.exists()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=120)
