"""The README's main job, end to end on the embedded model: no API key, no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmagentos.config import load_config
from llmagentos.experiment import run_experiment
from llmagentos.kernel.default import kernel, reset_kernel

pytest.importorskip("llama_cpp", reason="needs llmagentos[local]")

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "configs" / "text_maze_llm.toml"


@pytest.mark.timeout(240)
def test_the_llm_driven_agent_learns_the_maze_faster_than_q_learning(tmp_path: Path) -> None:
    reset_kernel()
    config = load_config(CONFIG).model_copy(
        update={"output": load_config(CONFIG).output.model_copy(update={"dir": tmp_path})}
    )
    result = run_experiment(config)
    assert result.train and result.eval and result.baseline_train and result.baseline_eval
    # Same seeds, same learner: the model's proposals make the hybrid learn faster,
    # and its greedy policy reaches the dock.
    assert result.train.mean_return is not None and result.baseline_train.mean_return is not None
    assert result.train.mean_return > result.baseline_train.mean_return + 10
    assert result.eval.success_rate == 1.0
    # Every step of the trace explains itself; early steps cite the model.
    lines = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert lines and all(line["reason"] for line in lines)
    assert any(line["reason"].startswith("llm:") for line in lines)
    assert any(line["reason"].startswith("q:") for line in lines)
    # The calls went through the kernel's scheduler to the embedded model.
    state = kernel().state()
    assert "local:smollm2" in json.dumps(state)
    for name in ("results.json", "qtable.json", "learning_curve.png"):
        assert (tmp_path / name).stat().st_size > 0
