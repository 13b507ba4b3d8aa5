"""A run's ``[telemetry]`` section: spans beside its results, and bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmagentos.config import parse_config
from llmagentos.exceptions import ConfigError
from llmagentos.experiment import run_experiment
from llmagentos.telemetry import TELEMETRY, configure_telemetry, current_telemetry
from llmagentos.telemetry.store import read_spans

pytest.importorskip("opentelemetry.sdk", reason="needs llmagentos[telemetry]")


def _config(tmp_path: Path, telemetry: dict[str, object]) -> object:
    return parse_config(
        {
            "name": "traced",
            "env": {"id": "FrozenLake-v1"},
            "train": {"episodes": 3, "seed": 0},
            "eval": {"episodes": 2, "seed": 100},
            "output": {"dir": str(tmp_path), "plot": False},
            "telemetry": telemetry,
        }
    )


def test_a_run_with_the_file_exporter_keeps_its_spans_beside_its_results(tmp_path: Path) -> None:
    result = run_experiment(_config(tmp_path, {"exporter": "file"}))  # type: ignore[arg-type]
    spans = list(read_spans(tmp_path / "spans.jsonl"))
    episodes = [s for s in spans if s["name"] == "invoke_agent traced"]
    assert len(episodes) == 5  # 3 training + 2 evaluation episodes
    assert [s["attributes"]["llmagentos.training"] for s in episodes] == [True] * 3 + [False] * 2
    assert {s["service"] for s in spans} == {"traced"}
    assert result.files["spans"] == tmp_path / "spans.jsonl"
    assert any(note.startswith("telemetry: ") for note in result.notes)
    assert not TELEMETRY.on  # the run turned off what it turned on
    # A second run into the same folder starts the file afresh.
    run_experiment(_config(tmp_path, {"exporter": "file"}))  # type: ignore[arg-type]
    assert len([s for s in read_spans(tmp_path / "spans.jsonl") if s["parent_id"] is None]) == 5


def test_a_callers_telemetry_wins_and_stays_on(tmp_path: Path) -> None:
    mine = configure_telemetry("memory")
    run_experiment(_config(tmp_path, {"exporter": "file"}))  # type: ignore[arg-type]
    assert current_telemetry() is mine and not (tmp_path / "spans.jsonl").exists()
    assert len([s for s in mine.spans() if s.name == "invoke_agent traced"]) == 5


@pytest.mark.parametrize(
    ("telemetry", "field"),
    [
        ({"exporter": "zipkin"}, "telemetry.exporter"),
        ({"exporter": "otlp", "endpoint": "127.0.0.1:4318"}, "telemetry.endpoint"),
        ({"exporter": "file", "record_content": "maybe"}, "telemetry.record_content"),
        ({"exporter": "file", "colour": "red"}, "telemetry.colour"),
    ],
)
def test_bad_telemetry_settings_name_their_field(
    tmp_path: Path, telemetry: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, telemetry)
    assert caught.value.field == field
