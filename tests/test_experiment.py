"""The library-level runner: files written, resume, Ctrl-C, and checks made before writing."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from llmagentos import Agent, __version__
from llmagentos.config import RunConfig, parse_config
from llmagentos.exceptions import ConfigError, ModuleError
from llmagentos.experiment import (
    EVAL_SEED_OFFSET,
    Experiment,
    PhaseResult,
    RunCallbacks,
    run_experiment,
    with_overrides,
)
from llmagentos.plotting import PLOT_EXTRA_HINT, moving_average
from llmagentos.rl.qtable import QTable
from llmagentos.trace import read_trace
from llmagentos.types import EpisodeResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def taxi(out: Path, *, n_train: int = 200, n_eval: int = 20, **extra: Any) -> RunConfig:
    """A small Taxi run whose epsilon decays fast enough to learn in a few hundred episodes."""
    data: dict[str, Any] = {
        "name": "taxi_test",
        "env": {"id": "Taxi-v4"},
        "agent": {
            "planning": {
                "type": "epsilon_greedy",
                "epsilon": {
                    "type": "linear",
                    "start": 1.0,
                    "end": 0.05,
                    "duration": 600,
                    "per": "episode",
                },
            },
            "learning": {"type": "q_learning", "alpha": 0.5, "gamma": 0.99},
        },
        "train": {"episodes": n_train, "seed": 0},
        "eval": {"episodes": n_eval, "seed": 10_000},
        "output": {"dir": str(out), "trace_train_every": 100, "trace_eval_episodes": 2},
    }
    for key, value in extra.items():
        data[key] = value
    return parse_config(data)


def test_a_run_writes_five_consistent_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = taxi(out)
    experiment = Experiment(config)
    result = experiment.run()

    assert sorted(p.name for p in out.iterdir()) == [
        "learning_curve.png",
        "qtable.json",
        "results.json",
        "status.json",
        "trace.jsonl",
    ]
    results = json.loads((out / "results.json").read_text())
    status = json.loads((out / "status.json").read_text())
    assert (status["format"], status["state"], status["pid"]) == (
        "llmagentos.status",
        "completed",
        os.getpid(),
    )
    assert status["result"]["train"]["returns"] == results["train"]["returns"]
    assert results["format"] == "llmagentos.results"
    assert results["llmagentos_version"] == __version__
    assert results["env"] == "Taxi-v4"
    assert results["interrupted"] is False
    assert results["error"] is None
    assert parse_config(results["config"]) == config
    train, evaluation = results["train"], results["eval"]
    assert train["episodes"] == len(train["returns"]) == len(train["lengths"]) == 200
    assert evaluation["episodes"] == len(evaluation["returns"]) == 20
    summary = results["summary"]
    assert summary["eval_mean_return"] == pytest.approx(math.fsum(evaluation["returns"]) / 20)
    positive = sum(1 for r in evaluation["returns"] if r > 0)
    assert summary["eval_success_rate"] == pytest.approx(positive / 20)
    assert summary["total_steps"] == sum(train["lengths"]) + sum(evaluation["lengths"])
    assert summary["wall_seconds"] > 0
    assert summary["interrupted"] is False
    assert result.eval is not None
    assert result.eval.returns == evaluation["returns"]

    # Training episodes 0 and 100, then the first two eval episodes (agent indices 200, 201).
    lines = read_trace(out / "trace.jsonl")
    traced = sorted({(line["training"], line["episode"]) for line in lines})
    assert traced == [(False, 200), (False, 201), (True, 0), (True, 100)]
    for line in lines:
        assert {"reason", "action", "reward"} <= line.keys()
        assert line["timings"] is not None
        assert line["agent"] == "taxi_test"
    assert sum(1 for line in lines if line["episode"] == 100) == train["lengths"][100]

    table = QTable.load(out / "qtable.json")
    assert (len(table), table.n_actions, table.n_states) == (500, 6, 500)
    assert experiment.built.q_table is not None
    assert table.rows == experiment.built.q_table.rows
    assert table.meta["env"] == "Taxi-v4"
    assert table.meta["algorithm"] == "q_learning"
    assert table.meta["counters"] == {"steps": sum(train["lengths"]), "episodes": 200}
    assert results["counters"] == table.meta["counters"]

    assert (out / "learning_curve.png").read_bytes().startswith(PNG_MAGIC)


def test_resume_continues_counters_and_learning(tmp_path: Path) -> None:
    first = run_experiment(taxi(tmp_path / "first", n_train=300, n_eval=100))
    saved = tmp_path / "first" / "qtable.json"
    second_config = with_overrides(
        taxi(tmp_path / "second", n_train=1000, n_eval=100), resume=saved
    )

    experiment = Experiment(second_config)
    # The planner's epsilon schedule picks up where the first run stopped.
    selector = experiment.built.agent.planning_module.selector
    assert selector is not None
    assert selector.state_dict() == first.counters  # type: ignore[attr-defined]
    second = experiment.run()

    assert first.train is not None
    assert second.train is not None
    assert second.counters == {
        "steps": first.counters["steps"] + second.train.steps,
        "episodes": 300 + 1000,
    }
    meta = QTable.load(tmp_path / "second" / "qtable.json").meta
    assert meta["counters"] == second.counters
    assert first.eval is not None
    assert second.eval is not None
    assert second.eval.mean_return is not None
    assert first.eval.mean_return is not None
    assert second.eval.mean_return >= first.eval.mean_return
    results = json.loads((tmp_path / "second" / "results.json").read_text())
    assert results["config"]["resume"] == str(saved)


class StopAfter(RunCallbacks):
    """Presses Ctrl-C after ``count`` finished episodes of ``phase``."""

    def __init__(self, phase: str, count: int) -> None:
        self.phase, self.count = phase, count
        self.finished: list[str] = []

    def episode_finished(self, phase: PhaseResult, episode: EpisodeResult) -> None:
        if phase.phase == self.phase and len(phase.episodes) == self.count:
            raise KeyboardInterrupt

    def phase_finished(self, phase: PhaseResult) -> None:
        self.finished.append(phase.phase)


def test_ctrl_c_in_training_keeps_the_finished_episodes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    hooks = StopAfter("train", 7)
    result = Experiment(taxi(out)).run(hooks)

    assert result.interrupted
    assert hooks.finished == ["train"]  # the progress display was closed; eval never ran
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] is True
    assert results["summary"]["interrupted"] is True
    assert len(results["train"]["returns"]) == results["train"]["episodes"] == 7
    assert results["train"]["planned_episodes"] == 200
    assert results["eval"] is None
    assert QTable.load(out / "qtable.json").meta["counters"]["episodes"] == 7
    assert read_trace(out / "trace.jsonl")[0]["episode"] == 0
    assert (out / "learning_curve.png").read_bytes().startswith(PNG_MAGIC)
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_ctrl_c_in_evaluation_keeps_training(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = Experiment(taxi(out, n_train=20, n_eval=10)).run(StopAfter("eval", 3))

    assert result.interrupted
    results = json.loads((out / "results.json").read_text())
    assert results["train"]["episodes"] == 20
    assert results["eval"]["episodes"] == len(results["eval"]["returns"]) == 3


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_while_saving_waits_until_the_files_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = QTable.save

    def save_during_ctrl_c(self: QTable, path: str | os.PathLike[str]) -> Path:
        os.kill(os.getpid(), signal.SIGINT)
        return real_save(self, path)

    monkeypatch.setattr(QTable, "save", save_during_ctrl_c)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(taxi(out, n_train=3, n_eval=1))
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] is False  # the run itself had finished
    assert (out / "qtable.json").is_file()


def test_a_failing_module_still_writes_what_was_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Agent.run_episode
    calls = 0

    def failing(self: Agent, **kwargs: Any) -> EpisodeResult:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise ModuleError("planning", "the model server went away", step=3)
        return real(self, **kwargs)

    monkeypatch.setattr(Agent, "run_episode", failing)
    out = tmp_path / "run"
    with pytest.raises(ModuleError, match="went away"):
        run_experiment(taxi(out, n_train=50))
    results = json.loads((out / "results.json").read_text())
    assert results["train"]["episodes"] == 5
    assert "went away" in results["error"]
    assert results["interrupted"] is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"env": {"id": "Taxi-v3"}}, "env.id"),
        ({"train": {"episodes": 5, "seed": -1}}, "train.seed"),
        ({"train": {"episodes": 0}, "eval": {"episodes": 0}}, "train"),
        ({"resume": "missing/qtable.json"}, "resume"),
    ],
)
def test_bad_configs_write_nothing(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as caught:
        Experiment(taxi(out, **change))
    assert caught.value.field == field
    assert not out.exists()


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError) as caught:
        Experiment(taxi(blocker))
    assert caught.value.field == "output.dir"
    with pytest.raises(ConfigError, match="not a folder"):
        Experiment(taxi(blocker / "run"))


def test_no_trace_and_no_plot_when_switched_off(tmp_path: Path) -> None:
    out = tmp_path / "run"
    output = {"dir": str(out), "trace_train_every": 0, "trace_eval_episodes": 0, "plot": False}
    result = run_experiment(taxi(out, n_train=5, n_eval=2, output=output))
    assert sorted(result.files) == ["qtable", "results"]
    assert sorted(p.name for p in out.iterdir()) == ["qtable.json", "results.json", "status.json"]


def test_without_matplotlib_the_run_says_how_to_get_the_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llmagentos.experiment.matplotlib_available", lambda: False)
    out = tmp_path / "run"
    result = run_experiment(taxi(out, n_train=5, n_eval=2))
    assert PLOT_EXTRA_HINT in result.notes
    assert "install llmagentos[plot]" in PLOT_EXTRA_HINT
    assert not (out / "learning_curve.png").exists()
    assert json.loads((out / "results.json").read_text())["notes"] == [PLOT_EXTRA_HINT]


def test_eval_only_run_of_a_saved_table(tmp_path: Path) -> None:
    run_experiment(taxi(tmp_path / "first", n_train=30, n_eval=0))
    config = with_overrides(
        taxi(tmp_path / "second", n_train=0, n_eval=5),
        resume=tmp_path / "first" / "qtable.json",
    )
    result = run_experiment(config)
    assert result.train is None
    assert result.eval is not None
    assert len(result.eval.episodes) == 5
    # Evaluation does not learn: the counters are the first run's.
    assert result.counters["episodes"] == 30


def test_with_overrides(tmp_path: Path) -> None:
    base = parse_config({"env": {"id": "Taxi-v4"}, "train": {"episodes": 10, "seed": 3}})
    changed = with_overrides(
        base,
        output_dir=tmp_path,
        train_episodes=4,
        eval_episodes=6,
        seed=7,
        resume=tmp_path / "q.json",
    )
    assert changed.output_dir() == tmp_path
    assert changed.train is not None
    assert (changed.train.episodes, changed.train.seed) == (4, 7)
    assert changed.eval is not None
    assert (changed.eval.episodes, changed.eval.seed) == (6, 7 + EVAL_SEED_OFFSET)
    assert changed.resume == tmp_path / "q.json"
    assert with_overrides(base) == base
    added = with_overrides(base, eval_episodes=2)
    assert added.eval is not None
    assert added.eval.seed == 3 + EVAL_SEED_OFFSET


def test_moving_average() -> None:
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([], 5) == []
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0], 0)
