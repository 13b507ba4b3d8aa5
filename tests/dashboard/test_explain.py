"""``llmagentos explain``: a step's features, what was weighed, what overruled what, what
was learned, and the exact prompt and reply; bad runs, episodes and steps named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmagentos.cli.main import main
from llmagentos.exceptions import RunLookupError
from llmagentos.explain import explain_step, find_runs, open_run


def _steps(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "maze" / "trace.jsonl").read_text().splitlines()]


def test_every_hybrid_step_says_what_decided_and_what_it_weighed(runs_root: Path) -> None:
    steps = _steps(runs_root)
    sources = {s["details"]["source"] for s in steps}
    assert {"llm", "q"} <= sources  # trust_after=2: the model first, then Q where sure
    for record in steps:
        details = record["details"]
        assert details["action_names"] == ["north", "east", "south", "west"]
        assert len(details["q_values"]) == len(details["visits"]) == 4
        prefix = {"loop": "q: breaking a loop"}.get(details["source"], details["source"] + ":")
        assert record["reason"].startswith(prefix)
    # Where Q overruled an earlier proposal of the model, the step says so.
    overruled = [s for s in steps if s["details"]["source"] == "q" and "overruled" in s["details"]]
    for record in overruled:
        assert record["details"]["proposal"]["action"] != record["action"]
        assert "Q overruled the model" in record["details"]["overruled"]


def test_a_model_step_is_explained_with_its_prompt_and_reply(runs_root: Path) -> None:
    record = next(s for s in _steps(runs_root) if s["details"]["source"] == "llm")
    explanation = explain_step(runs_root / "maze", record["episode"], record["step"])
    assert explanation.source == "llm"
    assert explanation.observation == record["observation"]
    assert explanation.proposal is not None
    assert explanation.proposal["action"] == record["action"]
    chosen = [o for o in explanation.options if o.chosen]
    assert [o.name for o in chosen] == [record["details"]["action_names"][record["action"]]]
    (call,) = explanation.model_calls
    assert call.model == "stand-in:wrong30" and call.input_tokens is not None
    assert call.prompt is not None and call.prompt[-1]["content"] == record["observation"]
    assert call.reply is not None
    reply = json.loads(call.reply[0]["content"])
    assert reply["action"] == explanation.action_name
    assert explanation.learned is not None and explanation.learned.startswith("Q(s, ")
    assert explanation.trace_id is not None


def test_a_cached_proposal_points_at_the_call_that_made_it(runs_root: Path) -> None:
    cached = [
        s for s in _steps(runs_root)
        if s["details"].get("proposal", {}).get("from") == "cache"
        and s["details"]["source"] == "llm"
    ]  # fmt: skip
    assert cached, "the stand-in's answers are cached by prompt"
    explanation = explain_step(runs_root / "maze", cached[0]["episode"], cached[0]["step"])
    (call,) = explanation.model_calls
    assert call.asked_at is not None and call.asked_at.startswith("episode ")
    assert call.prompt is not None and call.prompt[-1]["content"] == cached[0]["observation"]


def test_the_cli_prints_the_explanation_and_json(runs_root: Path, capsys) -> None:
    record = next(s for s in _steps(runs_root) if s["details"]["source"] == "llm")
    where = ["--episode", str(record["episode"]), "--step", str(record["step"])]
    assert main(["explain", str(runs_root / "maze"), *where]) == 0
    printed = capsys.readouterr().out
    for part in ("what it considered", "proposal", "did", "learned", "reply:", "user:"):
        assert part in printed
    assert main(["explain", str(runs_root / "maze"), *where, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["step"] == record["step"] and data["model_calls"][0]["prompt"]
    assert main(["explain", str(runs_root / "maze")]) == 0
    assert "traced episodes" in capsys.readouterr().out
    assert main(["explain", str(runs_root / "maze"), "--episode", "0"]) == 0
    assert "episode 0 of maze_hybrid" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--episode", "999", "--step", "0"], "episode 999 is not traced"),
        (["--episode", "0", "--step", "999"], "has steps 0 to"),
        (["--step", "1"], "--step needs --episode"),
        (["--episode", "-1"], "--episode"),
    ],
)
def test_a_step_that_is_not_there_is_named(runs_root: Path, capsys, args, named) -> None:
    assert main(["explain", str(runs_root / "maze"), *args]) == 2
    assert named in capsys.readouterr().err


def test_missing_and_broken_runs_are_told_apart(runs_root: Path, capsys) -> None:
    assert main(["explain", str(runs_root / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    broken = open_run(runs_root / "broken")
    assert broken.state == "broken"
    assert any("results.json cannot be read" in p for p in broken.problems)
    died = open_run(runs_root / "nested" / "died")
    assert died.state == "died" and "gone without finishing" in died.problems[0]
    assert main(["explain", str(runs_root / "broken")]) == 0  # shown, not a crash
    with pytest.raises(RunLookupError) as caught:
        explain_step(runs_root / "broken", 0, 0)
    assert caught.value.field == "episode"
    states = {run.path.name: run.state for run in find_runs(runs_root)}
    # (the browser tests add runs of their own to this folder)
    assert {k: states[k] for k in ("maze", "broken", "died")} == {
        "maze": "completed", "broken": "broken", "died": "died",
    }  # fmt: skip


def test_a_run_without_spans_says_how_to_get_them(tmp_path: Path) -> None:
    from tests.dashboard.runs import hybrid_run

    out = hybrid_run(tmp_path / "maze", episodes=1)
    (out / "spans.jsonl").unlink()
    explanation = explain_step(out, 0, 0)
    assert explanation.model_calls == []
    assert any('exporter = "file"' in note for note in explanation.notes)
