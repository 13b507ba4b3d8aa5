"""``llmagentos recommend eval``: one small real run, and bad options (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmagentos.cli.main import main


def test_a_small_run_writes_results_plot_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    # --quick tries two values per hyperparameter; --users and --seeds override its own.
    code = main(["recommend", "eval", "--quick", "--users", "40", "--seeds", "2",
                 "--slates", "2", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    names = [m["name"] for m in results["models"]]
    assert names == ["TopPop", "ItemKNN", "EASE", "online TS", "online TS, no updates"]
    assert results["settings"]["seeds"] == 2 and results["settings"]["users"] == 40
    online = results["models"][3]
    assert online["seeds"] == 2 and len(online["per_seed"]["NDCG@10"]) == 2
    assert len(online["hits_by_slate"]) == 2
    for model in results["models"]:
        for metric in ("HR@10", "NDCG@10", "Recall@10"):
            ci = model["users_ci"][metric]
            assert 0.0 <= ci["low"] <= ci["mean"] <= ci["high"] <= 1.0
    assert [sorted(t["validation"]) for t in results["tuned"]] == [["200", "50"], ["1000", "200"]]
    assert "online TS - no updates" in results["paired"]
    assert (out / "metrics.png").stat().st_size > 10_000
    assert "EASE" in printed and "NDCG@10" in printed and "results.json" in printed


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--seeds", "0"], "--seeds"),
        (["--seeds", "many"], "--seeds"),
        (["--users", "3"], "--users"),
        (["--slates", "0"], "--slates"),
        (["--nope"], "--nope"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", "eval", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and option in err and "\n" not in err


def test_out_that_is_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "file"
    taken.write_text("x")
    assert main(["recommend", "eval", "--out", str(taken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out: {taken} is a file, not a folder"
