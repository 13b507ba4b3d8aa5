"""``llmagentos up / status / down`` with the shipped four-services example, for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmagentos.cli.main import main
from llmagentos.deploy.supervisor import process_alive

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")
pytest.importorskip("llama_cpp", reason="needs llmagentos[local]")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "deploy"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _deployment(tmp: Path) -> Path:
    text = (EXAMPLE / "maze_four_services.toml").read_text()
    text = text.replace("port = 8080", "port = 0").replace('name = "maze"', 'name = "maze-test"', 1)
    text = text.replace('"maze_agent.toml"', json.dumps(str(EXAMPLE / "maze_agent.toml")))
    path = tmp / "deploy.toml"
    path.write_text(text)
    return path


def _wait_for(path: Path, up: subprocess.Popen[bytes], seconds: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if up.poll() is not None:
            pytest.fail(f"up exited: {up.stdout.read().decode() if up.stdout else ''}")
        if path.exists():
            return dict(json.loads(path.read_text()))
        time.sleep(0.1)
    pytest.fail("the deployment never came up")


def test_up_runs_four_services_behind_the_gateway_and_down_stops_them(tmp_path, capsys):
    state_dir = tmp_path / "state"
    up = subprocess.Popen(
        [sys.executable, "-m", "llmagentos", "up", str(_deployment(tmp_path)),
         "--state-dir", str(state_dir)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        state = _wait_for(state_dir / "maze-test.json", up)
        processes = state["processes"]
        assert isinstance(processes, list)
        roles = sorted(p["role"] for p in processes)
        assert roles == ["execution/0", "gateway", "learning/0", "learning/1", "perception/0",
                         "planning/0", "planning/1"]  # fmt: skip

        assert main(["status", "maze-test", "--state-dir", str(state_dir)]) == 0
        table = capsys.readouterr().out
        assert table.count("yes") == 2 * len(processes)  # every process running and ready

        run = subprocess.run(
            [sys.executable, str(EXAMPLE / "run_remote_agent.py"), str(state["gateway"]), "3"],
            env=ENV, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("3 steps, return ")
        assert "last action" in run.stdout  # the LLM planner's reason came back too
        learners = [p["url"] for p in processes if str(p["role"]).startswith("learning/")]
        sessions = [httpx.get(f"{url}/readyz").json()["sessions"] for url in learners]
        assert sorted(sessions) == [0, 1]  # balancing = "session": one replica has it all

        assert main(["down", "maze-test", "--state-dir", str(state_dir)]) == 0
        assert up.wait(timeout=60) == 0
        assert not any(process_alive(int(p["pid"])) for p in processes)
        assert not (state_dir / "maze-test.json").exists()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)


def test_a_broken_deployment_is_refused_before_anything_starts(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[services]]\nname = "p"\nconfig = "missing.toml"\n')
    assert main(["up", str(bad), "--state-dir", str(tmp_path)]) == 2
    assert "services[0].config" in capsys.readouterr().err
    taxi = (Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml").read_text()
    (tmp_path / "typo.toml").write_text(taxi.replace('"epsilon_greedy"', '"epsilon_gredy"'))
    typo = tmp_path / "typo_deploy.toml"
    typo.write_text('name = "t"\n[[services]]\nname = "p"\nconfig = "typo.toml"\n')
    assert main(["up", str(typo), "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "services[0].config" in err and "unknown planning module 'epsilon_gredy'" in err
    assert not (tmp_path / "t.json").exists()  # nothing started, no state written
    assert main(["down", "nothing-here", "--state-dir", str(tmp_path)]) == 2
    assert main(["status", "nothing-here", "--state-dir", str(tmp_path)]) == 2
