"""``llmagentos codegen`` with a function model standing in for the LLM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmagentos.cli.main import main
from llmagentos.codegen.tasks import builtin_tasks
from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import ModelRequest
from llmagentos.registration import RegistryEntry, registry
from llmagentos.sandbox import Sandbox

SOLUTIONS = {t.entry_point: t.solution for t in builtin_tasks()}


def coder(request: ModelRequest) -> str:
    """Right at once for clamp; wrong then right for gcd (wrong again when sampling)."""
    prompt = request.messages[-1].content or ""
    name = "gcd" if "def gcd(" in prompt else "clamp"
    repairing = "tests passed." in prompt  # the sandbox's failure text is in the prompt
    if name == "gcd" and not repairing:
        return "```python\ndef gcd(a: int, b: int) -> int:\n    return a + b\n```"
    return f"```python\n{SOLUTIONS[name]}```"


@pytest.fixture
def scripted_models(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox) -> list[FunctionModel]:
    made: list[FunctionModel] = []

    def factory(rest: str, **kwargs: Any) -> FunctionModel:
        model = FunctionModel(coder, model_id=f"scripted:{rest}")
        made.append(model)
        return model

    registry.names("model")  # load the built-ins before patching the table
    entries = registry._entries.setdefault("model", {})
    monkeypatch.setitem(entries, "scripted", RegistryEntry("model", "scripted", factory, ""))
    return made


def test_codegen_writes_results_and_prints_a_summary(
    scripted_models: list[FunctionModel],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    argv = ["codegen", "--model", "scripted:x", "--tasks", "clamp,gcd", "--repairs", "1"]
    code = main([*argv, "--samples", "2", "--out", str(out), "--per-task"])
    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    assert summary["pass@1 (greedy)"] == 0.5
    assert summary["solved after r repairs"] == {"0": 0.5, "1": 1.0}
    assert summary["pass@k (sampled)"] == {"1": 0.5, "2": 0.5}
    gcd = results["tasks"][1]
    assert gcd["task_id"] == "gcd" and gcd["greedy"]["solved_at"] == 1
    assert gcd["greedy"]["attempts"][1]["reason"].startswith("repair after 3/4 tests failed")
    assert results["model"] == "scripted:x" and results["variant"] == "fresh"
    assert "pass@1 (greedy)" in printed and "solved after 1 repairs" in printed
    assert "repair 1" in printed and "results.json" in printed
    assert not list(out.glob("*.tmp"))


def test_quiet_prints_nothing(
    scripted_models: list[FunctionModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["codegen", "--model", "scripted:x", "--tasks", "clamp", "-q", "-o", str(tmp_path)])
    assert code == 0 and capsys.readouterr().out == ""
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["tasks"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "nope"], "unknown task id 'nope'"),
        (["--model", "bogus"], "unknown model id"),
        (["--prompt", "fancy"], "unknown prompt variant 'fancy'"),
        (["--repairs", "-1"], "Invalid value for '--repairs'"),
        (["--samples", "x"], "Invalid value for '--samples'"),
        (["--task-file", "/nonexistent.toml"], "cannot read"),
        (["--extra-body", '{"repeat_penalty": 1}'], "not the embedded model"),
        (["--model", "http://127.0.0.1:9/v1#m", "--extra-body", "{oops"], "not JSON"),
        (["--model", "http://127.0.0.1:9/v1#m", "--extra-body", "[1]"], "a JSON object"),
    ],
)
def test_bad_options_fail_in_one_line_with_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["codegen", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
