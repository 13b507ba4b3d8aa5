"""Servers freeze their start-up heap, so full collections under load stay short."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from llmagentos._heap import freeze_startup_heap
from llmagentos.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's own heap is collected as before


def test_freezing_moves_what_is_alive_out_of_the_collector_s_sight(thawed: None):
    kept = [[index] for index in range(1000)]  # tracked containers, alive
    freeze_startup_heap()
    assert gc.get_freeze_count() >= len(kept)
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
    seen: list[int] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.append(gc.get_freeze_count()))
    assert main(command(tmp_path)) == 0
    assert len(seen) == 1 and seen[0] > 0


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
