"""``llmagentos search index|query`` end to end (hash embeddings: no model to load)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from llmagentos.cli.main import main


def _docs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "dock.md").write_text("# Charging\n\nThe charging dock is south-east.\n")
    (folder / "flood.txt").write_text("Corridor B floods when it rains.")
    (folder / "bad.pdf").write_bytes(b"%PDF-1.4 broken")
    old = time.time_ns() - 3600 * 10**9  # outside the manifest's racy window
    for file in folder.iterdir():
        os.utime(file, ns=(old, old))
    return folder


def test_index_then_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = _docs(tmp_path / "docs")
    store = ["--store", str(tmp_path / "memory.db"), "--embedder", "hash:128"]
    # A bad file is named and skipped; the run finishes and exits 1 to say so.
    assert main(["search", "index", str(docs), *store, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == ["dock.md", "flood.txt"]
    assert [f["source"] for f in report["failed"]] == ["bad.pdf"]
    assert (tmp_path / "search" / "default.docs.manifest.sqlite").exists()

    assert main(["search", "index", str(docs), *store, "-q"]) == 0  # nothing new fails
    out = capsys.readouterr().out
    assert "0 added" in out and "still failing" in out and "bad.pdf" in out

    (docs / "worse.html").write_bytes(b"\x00\x01" * 50)
    assert main(["search", "index", str(docs), *store, "-q"]) == 1
    captured = capsys.readouterr()
    assert "skipped worse.html: binary content" in captured.err
    assert "1 failed" in captured.out

    assert main(["search", "query", "charging dock", *store, "-k", "1", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [(h["source"], h["heading_path"]) for h in hits] == [("dock.md", "Charging")]


def test_query_without_an_index_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["search", "query", "x", "--store", str(tmp_path / "m.db"), "--index", "none"])
    assert code == 2
    assert "no index 'none'" in capsys.readouterr().err


def test_index_of_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["search", "index", str(tmp_path / "nope"), "--store", str(tmp_path / "m.db")])
    assert code == 2
    assert "not a folder" in capsys.readouterr().err
