"""Shared run folders: built once per session, read by every explain and dashboard test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dashboard.runs import hybrid_run


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with a finished hybrid run, a broken run and a run whose process died."""
    root = tmp_path_factory.mktemp("runs")
    hybrid_run(root / "maze")
    broken = root / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json", encoding="utf-8")
    died = root / "nested" / "died"
    died.mkdir(parents=True)
    (died / "status.json").write_text(
        '{"format": "llmagentos.status", "state": "running", "pid": 999999999, '
        '"updated": 1.0, "result": {"name": "died", "train": null}}',
        encoding="utf-8",
    )
    return root
