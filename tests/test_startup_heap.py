"""Servers freeze their start-up heap and collect young objects less often, so
collections under load are short and rare."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from llmagentos._heap import YOUNG_THRESHOLD, prepare_gc_for_serving
from llmagentos.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def thawed() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's own heap is collected as before
    gc.set_threshold(*threshold)


def test_freezing_moves_what_is_alive_out_of_the_collector_s_sight(thawed: None):
    kept = [[index] for index in range(1000)]  # tracked containers, alive
    prepare_gc_for_serving()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    cycle: list[object] = []
    cycle.append(cycle)  # garbage made afterwards is collected as before
    del cycle
    assert gc.collect() >= 1


@pytest.mark.parametrize(
    "command",
    [
        lambda tmp: ["gateway", str(_gateway_config(tmp))],
        lambda tmp: ["serve", str(ROOT / "examples" / "configs" / "taxi.toml")],
    ],
    ids=["gateway", "serve"],
)
def test_each_server_freezes_its_heap_before_it_serves(
    thawed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: Any
):
    seen: list[tuple[int, int]] = []

    def serve(*args: Any, **kwargs: Any) -> None:
        seen.append((gc.get_freeze_count(), gc.get_threshold()[0]))

    monkeypatch.setattr(uvicorn, "run", serve)
    assert main(command(tmp_path)) == 0
    assert len(seen) == 1 and seen[0][0] > 0 and seen[0][1] == YOUNG_THRESHOLD


def _gateway_config(folder: Path) -> Path:
    config = folder / "gateway.toml"
    config.write_text('[[services]]\nname = "up"\nreplicas = ["http://127.0.0.1:9"]\n')
    return config


def test_each_gateway_worker_freezes_its_heap(
    thawed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from llmagentos.gateway import workers

    monkeypatch.setenv(workers.ENV_CONFIG, str(_gateway_config(tmp_path)))
    workers.worker_app()  # what uvicorn's factory calls in each worker process
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
