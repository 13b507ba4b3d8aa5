"""The ``llmagentos`` command line: run, env list, registry list, --version, errors, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmagentos import Agent, __version__
from llmagentos.cli.main import main
from llmagentos.rl.qtable import QTable
from llmagentos.trace import read_trace
from llmagentos.types import EpisodeResult

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"

TAXI = """
name = "taxi_cli"

[env]
id = "Taxi-v4"

[agent.planning]
type = "epsilon_greedy"
epsilon = { type = "linear", start = 1.0, end = 0.05, duration = 100, per = "episode" }

[agent.learning]
type = "q_learning"
alpha = 0.5
gamma = 0.99

[train]
episodes = 40
seed = 0

[eval]
episodes = 5
seed = 10000

[output]
trace_train_every = 20
trace_eval_episodes = 1
"""

FROZENLAKE_YAML = """
name: lake
env:
  id: FrozenLake-v1
  kwargs: {is_slippery: true}
agent:
  planning:
    type: epsilon_greedy
    epsilon: {type: exponential, start: 1.0, end: 0.05, decay: 0.99, per: episode}
  learning: {type: expected_sarsa, alpha: 0.1, gamma: 0.99}
train: {episodes: 60, seed: 1}
eval: {episodes: 10, seed: 2}
"""


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """Call the real entry point in-process; return its exit code and output."""

    def invoke(*args: str | Path) -> Outcome:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return invoke


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- run ----------------------------------------------------------------------------------


def test_run_writes_the_outputs_and_a_summary(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("run", write(tmp_path, TAXI), "--out", out, "--train-episodes", "30")

    assert result.code == 0, result.err
    assert result.err == ""
    assert "taxi_cli: q_learning on Taxi-v4" in result.out
    assert "30/30" in result.out
    assert "5/5" in result.out
    for name in ("results.json", "trace.jsonl", "qtable.json", "learning_curve.png"):
        assert name in result.out
        assert (out / name).is_file()
    results = json.loads((out / "results.json").read_text())
    assert len(results["train"]["returns"]) == 30
    assert len(results["eval"]["returns"]) == 5
    assert results["config"]["output"]["dir"] == str(out)
    assert {line["episode"] for line in read_trace(out / "trace.jsonl")} == {0, 20, 30}


def test_run_quiet_prints_nothing(cli: Any, tmp_path: Path) -> None:
    result = cli("run", write(tmp_path, TAXI), "-o", tmp_path / "out", "--quiet")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert (tmp_path / "out" / "results.json").is_file()


def test_run_a_yaml_config(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "lake"
    result = cli("run", write(tmp_path, FROZENLAKE_YAML, "lake.yaml"), "--out", out, "-q")
    assert result.code == 0, result.err
    results = json.loads((out / "results.json").read_text())
    assert results["env"] == "FrozenLake-v1"
    assert results["train"]["episodes"] == 60
    assert QTable.load(out / "qtable.json").meta["algorithm"] == "expected_sarsa"


def test_seed_and_episode_overrides(cli: Any, tmp_path: Path) -> None:
    config = write(tmp_path, TAXI)
    args = ["--train-episodes", "3", "--eval-episodes", "2", "--seed", "5", "-q"]
    assert cli("run", config, "-o", tmp_path / "a", *args).code == 0
    assert cli("run", config, "-o", tmp_path / "b", *args).code == 0
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    second = json.loads((tmp_path / "b" / "results.json").read_text())
    assert first["config"]["train"]["seed"] == 5
    assert first["config"]["eval"]["seed"] == 10_005
    assert first["train"]["returns"] == second["train"]["returns"]  # seeded: reproducible


def test_resume_carries_the_counters_over(cli: Any, tmp_path: Path) -> None:
    config = write(tmp_path, TAXI)
    assert cli("run", config, "-o", tmp_path / "a", "-q").code == 0
    saved = tmp_path / "a" / "qtable.json"
    result = cli("run", config, "-o", tmp_path / "b", "--resume", saved, "-q")
    assert result.code == 0, result.err
    first = QTable.load(saved).meta["counters"]
    second = json.loads((tmp_path / "b" / "results.json").read_text())
    assert second["counters"]["episodes"] == first["episodes"] + 40
    assert second["counters"]["steps"] == first["steps"] + sum(second["train"]["lengths"])
    assert second["config"]["resume"] == str(saved)


def test_the_example_configs_are_valid(cli: Any, tmp_path: Path) -> None:
    examples = sorted(EXAMPLES.glob("*.toml")) + sorted(EXAMPLES.glob("*.yaml"))
    assert {p.name for p in examples} >= {"taxi.toml", "cliffwalking.toml", "frozenlake.yaml"}
    for example in examples:
        out = tmp_path / example.stem
        args = ["--train-episodes", "2", "--eval-episodes", "1", "-q"]
        result = cli("run", example, "-o", out, *args)
        assert result.code == 0, f"{example.name}: {result.err}"


# -- errors -------------------------------------------------------------------------------

BAD_CONFIGS = [
    pytest.param(TAXI.replace("seed = 0", "seed = 0\nepisods = 3"), "train.episods", id="unknown"),
    pytest.param(TAXI.replace("episodes = 40", "episodes = -4"), "train.episodes", id="negative"),
    pytest.param(TAXI.replace('"Taxi-v4"', '"Taxi-v3"'), "did you mean 'Taxi-v4'", id="env"),
    pytest.param(
        TAXI.replace('"q_learning"', '"q_learnin"'), "agent.learning.type", id="module type"
    ),
    pytest.param(
        TAXI.replace('type = "linear"', 'type = "linar"'),
        "agent.planning.epsilon.type",
        id="schedule",
    ),
    pytest.param(
        TAXI.replace("duration = 100", "duration = 0"),
        "agent.planning.epsilon.duration",
        id="schedule value",
    ),
    pytest.param(TAXI.replace("gamma = 0.99", "gamma = 2"), "agent.learning.gamma", id="gamma"),
    pytest.param(
        TAXI.replace("gamma = 0.99", "gamma = 0.99\nbeta = 1"), "agent.learning.beta", id="param"
    ),
    pytest.param(TAXI.replace("[eval]", "[eval"), "invalid TOML", id="toml"),
    pytest.param(TAXI.replace("seed = 0", "seed = -2", 1), "train.seed", id="seed"),
]


def assert_one_error_line(result: Outcome, *needles: str) -> None:
    assert result.code == 2
    assert result.out == ""
    assert result.err.endswith("\n")
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith("error: ")
    for needle in needles:
        assert needle in result.err


@pytest.mark.parametrize(("text", "needle"), BAD_CONFIGS)
def test_bad_configs_fail_in_one_line_and_write_nothing(
    cli: Any, tmp_path: Path, text: str, needle: str
) -> None:
    out = tmp_path / "out"
    result = cli("run", write(tmp_path, text), "--out", out)
    assert_one_error_line(result, needle)
    assert not out.exists()


def test_unknown_env_suggests_the_id(cli: Any, tmp_path: Path) -> None:
    result = cli("run", write(tmp_path, TAXI.replace('"Taxi-v4"', '"taxi-v4"')), "-o", tmp_path)
    assert_one_error_line(result, "env.id", "unknown environment 'taxi-v4'", "'Taxi-v4'")


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        pytest.param("nowhere.toml", None, "no such file", id="missing"),
        pytest.param("config.json", "{}", "use a .toml, .yaml or .yml file", id="extension"),
        pytest.param("bad.yaml", "env: [unclosed", "invalid YAML", id="yaml"),
        pytest.param("list.yaml", "- 1\n- 2", "table/mapping", id="not a mapping"),
    ],
)
def test_bad_files_fail_in_one_line(
    cli: Any, tmp_path: Path, name: str, text: str | None, needle: str
) -> None:
    path = tmp_path / name if text is None else write(tmp_path, text, name)
    out = tmp_path / "out"
    assert_one_error_line(cli("run", path, "--out", out), needle)
    assert not out.exists()


def test_missing_resume_file_fails_in_one_line(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("run", write(tmp_path, TAXI), "-o", out, "--resume", tmp_path / "no.json")
    assert_one_error_line(result, "resume", "no such file")
    assert not out.exists()


def test_a_resume_table_of_the_wrong_size_fails(cli: Any, tmp_path: Path) -> None:
    QTable(4, 16).save(tmp_path / "lake.json")
    out = tmp_path / "out"
    result = cli("run", write(tmp_path, TAXI), "-o", out, "--resume", tmp_path / "lake.json")
    assert_one_error_line(result, "resume", "16 states x 4 actions")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--train-episodes", "-1"], "--train-episodes"),
        (["--eval-episodes", "many"], "--eval-episodes"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_options_fail_in_one_line(
    cli: Any, tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "out"
    assert_one_error_line(cli("run", write(tmp_path, TAXI), "-o", out, *args), needle)
    assert not out.exists()


def test_unknown_command_and_missing_argument(cli: Any) -> None:
    assert_one_error_line(cli("rn"), "Did you mean 'run'")
    assert_one_error_line(cli("run"), "CONFIG")


def test_no_command_prints_the_help(cli: Any) -> None:
    result = cli()
    assert result.code == 2
    assert "run" in result.out
    assert "registry" in result.out


# -- Ctrl-C -------------------------------------------------------------------------------


def test_ctrl_c_exits_130_and_keeps_the_finished_episodes(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Agent.run_episode
    calls = 0

    def interrupted_after_12(self: Agent, **kwargs: Any) -> EpisodeResult:
        nonlocal calls
        calls += 1
        if calls > 12:
            raise KeyboardInterrupt
        return real(self, **kwargs)

    monkeypatch.setattr(Agent, "run_episode", interrupted_after_12)
    out = tmp_path / "out"
    result = cli("run", write(tmp_path, TAXI), "-o", out)

    assert result.code == 130
    assert "interrupted" in result.out
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] is True
    assert results["train"]["episodes"] == len(results["train"]["returns"]) == 12
    assert results["eval"] is None
    assert QTable.load(out / "qtable.json").meta["counters"]["episodes"] == 12
    assert (out / "trace.jsonl").is_file()
    assert (out / "learning_curve.png").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_real_sigint_stops_the_process_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = write(tmp_path, TAXI.replace("episodes = 40", "episodes = 1000000"))
    # A shell that ran the tests in the background may have set SIGINT to "ignore",
    # which the child would inherit: give it Python's Ctrl-C handler explicitly.
    program = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from llmagentos.cli.main import main; raise SystemExit(main())"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", program, "run", str(config), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / ".trace.jsonl.partial").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] is True
    assert 0 < results["train"]["episodes"] == len(results["train"]["returns"]) < 1_000_000
    assert "interrupted" in stdout
    assert sorted(os.listdir(out)) == [
        "learning_curve.png",
        "qtable.json",
        "results.json",
        "status.json",
        "trace.jsonl",
    ]
    assert json.loads((out / "status.json").read_text())["state"] == "interrupted"


# -- env, registry, version ---------------------------------------------------------------


def test_env_list(cli: Any) -> None:
    result = cli("env", "list")
    assert result.code == 0
    for env_id in ("Taxi-v4", "CliffWalking-v1", "FrozenLake-v1", "CartPole-v1"):
        assert env_id in result.out
    assert "LunarLander-v3" not in result.out
    assert "LunarLander-v3" in cli("env", "list", "--all").out


def test_registry_list(cli: Any) -> None:
    everything = cli("registry", "list")
    assert everything.code == 0
    for name in ("q_learning", "expected_sarsa", "epsilon_greedy", "discrete"):
        assert name in everything.out
    learning = cli("registry", "list", "learning")
    assert "sarsa" in learning.out
    assert "epsilon_greedy" not in learning.out
    assert_one_error_line(cli("registry", "list", "learnin"), "did you mean 'learning'")


def test_version(cli: Any) -> None:
    result = cli("--version")
    assert (result.code, result.out) == (0, f"llmagentos {__version__}\n")


def test_python_dash_m(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llmagentos", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"llmagentos {__version__}")
    done = subprocess.run(
        [sys.executable, "-m", "llmagentos", "run", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path / 'none.toml'}: no such file\n"
