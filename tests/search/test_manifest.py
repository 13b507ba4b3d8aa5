"""The manifest: change detection for incremental indexing, and what survives a kill."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llmagentos.exceptions import ConfigError
from llmagentos.search import Manifest, load_document, scan
from llmagentos.search.manifest import RACY_WINDOW_NS

ROOT = Path(__file__).resolve().parents[2]
OLD = time.time_ns() - 3600 * 10**9  # an hour ago: outside the racy window


def _write(folder: Path, name: str, text: str, mtime_ns: int = OLD) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def _index(manifest: Manifest, root: Path) -> None:
    """What an indexer does with the manifest: read what changed, record, forget."""
    changes = manifest.compare(scan(root))
    with manifest.transaction():
        for state in changes.to_read:
            document = load_document(state.path, root=root)
            manifest.record_document(document, [f"{document.source}#0"])
        for entry in changes.deleted:
            manifest.forget(entry.source)


def test_new_modified_unchanged_deleted(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    for name in ["a.txt", "b.md", "sub/c.txt"]:
        _write(docs, name, f"text of {name}")
    manifest = Manifest.open(tmp_path / "index" / "manifest.sqlite")
    first = manifest.compare(scan(docs))
    assert [s.source for s in first.new] == ["a.txt", "b.md", "sub/c.txt"]
    assert first.modified == first.unchanged == first.deleted == []
    _index(manifest, docs)
    assert set(manifest.entries()) == {"a.txt", "b.md", "sub/c.txt"}

    _write(docs, "b.md", "new text of b", OLD + 10**9)  # edited
    (docs / "sub" / "c.txt").unlink()  # deleted
    _write(docs, "d.txt", "a new file")  # added
    changes = manifest.compare(scan(docs))
    assert [s.source for s in changes.new] == ["d.txt"]
    assert [s.source for s in changes.modified] == ["b.md"]
    assert [s.source for s in changes.unchanged] == ["a.txt"]
    assert [e.source for e in changes.deleted] == ["sub/c.txt"]
    assert changes.deleted[0].chunk_keys == ("sub/c.txt#0",)  # what to delete from the store
    _index(manifest, docs)
    again = manifest.compare(scan(docs))
    assert again.to_read == [] and again.deleted == [] and len(again.unchanged) == 3


def test_touched_file_is_read_again_but_found_current(tmp_path: Path) -> None:
    file = _write(tmp_path, "a.txt", "same words")
    manifest = Manifest(sqlite3.connect(":memory:"))
    _index(manifest, tmp_path)
    os.utime(file, ns=(OLD + 5 * 10**9, OLD + 5 * 10**9))
    changes = manifest.compare(scan(tmp_path))
    assert [s.source for s in changes.modified] == ["a.txt"]  # mtime moved: must look
    document = load_document(file, root=tmp_path)
    assert manifest.is_current("a.txt", document.sha256)  # ... and its content did not
    file.write_text("other words", encoding="utf-8")
    assert not manifest.is_current("a.txt", load_document(file, root=tmp_path).sha256)


def test_a_file_indexed_right_after_an_edit_is_rehashed(tmp_path: Path) -> None:
    # Same size, same mtime (an edit within the clock tick): only the racy rule sees it.
    now = time.time_ns()
    _write(tmp_path, "a.txt", "version 1", mtime_ns=now)
    manifest = Manifest(sqlite3.connect(":memory:"))
    _index(manifest, tmp_path)
    entry = manifest.get("a.txt")
    assert entry is not None and entry.mtime_ns >= entry.indexed_at_ns - RACY_WINDOW_NS
    _write(tmp_path, "a.txt", "version 2", mtime_ns=now)
    assert [s.source for s in manifest.compare(scan(tmp_path)).modified] == ["a.txt"]


def test_rehash_treats_every_known_file_as_modified(tmp_path: Path) -> None:
    _write(tmp_path, "a.txt", "x")
    manifest = Manifest(sqlite3.connect(":memory:"))
    _index(manifest, tmp_path)
    assert manifest.compare(scan(tmp_path)).modified == []
    assert len(manifest.compare(scan(tmp_path), rehash=True).modified) == 1


def test_failures_are_remembered_until_the_file_changes(tmp_path: Path) -> None:
    _write(tmp_path, "bad.txt", "x")
    manifest = Manifest(sqlite3.connect(":memory:"))
    state = scan(tmp_path)[0]
    with manifest.transaction():
        manifest.record_failure(state, "binary content (NUL bytes)")
    changes = manifest.compare(scan(tmp_path))
    assert changes.to_read == []
    assert [(e.source, e.error) for e in changes.still_failing] == [
        ("bad.txt", "binary content (NUL bytes)")
    ]
    assert not manifest.is_current("bad.txt", "")
    _write(tmp_path, "bad.txt", "now fixed", OLD + 10**9)
    assert [s.source for s in manifest.compare(scan(tmp_path)).modified] == ["bad.txt"]


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    manifest = Manifest.open(tmp_path / "m.sqlite")

    def write_then_fail() -> None:
        with manifest.transaction():
            manifest.record("a.txt", sha256="0", mtime_ns=1, size=1, chunk_keys=["k"])
            raise RuntimeError("the store write failed")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert manifest.entries() == {}


def test_table_name_is_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        Manifest(sqlite3.connect(":memory:"), table="x; DROP TABLE y")
    assert caught.value.field == "table"


WRITER = textwrap.dedent(
    """
    import sys, time
    from llmagentos.search import Manifest
    manifest = Manifest.open(sys.argv[1])
    n = 0
    while True:
        with manifest.transaction():  # one file's row and its keys: one transaction
            keys = [f"f{n}#{i}" for i in range(n % 7 + 1)]
            manifest.record(f"f{n}", sha256=str(n), mtime_ns=n, size=len(keys), chunk_keys=keys)
            if n == 25:
                manifest.record("half-done", sha256="x", mtime_ns=0, size=0)
                print("inside", flush=True)
                time.sleep(60)  # killed here, mid-transaction
        print(n, flush=True)
        n += 1
    """
)


def test_killed_mid_batch_keeps_every_commit_and_no_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    committed = -1
    for line in child.stdout:
        if line.strip() == "inside":
            break
        committed = int(line)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert committed == 24
    manifest = Manifest.open(path)
    entries = manifest.entries()
    assert set(entries) == {f"f{n}" for n in range(26)} - {"f25"}  # f25 was mid-transaction
    for n in range(25):
        entry = entries[f"f{n}"]
        assert entry.chunk_keys == tuple(f"f{n}#{i}" for i in range(n % 7 + 1))


def test_pending_keys_mark_an_unfinished_document(tmp_path: Path) -> None:
    _write(tmp_path, "a.txt", "x")
    manifest = Manifest(sqlite3.connect(":memory:"))
    _index(manifest, tmp_path)
    assert manifest.compare(scan(tmp_path)).to_read == []
    with manifest.transaction():
        manifest.mark_pending("a.txt", ["a.txt#0:new", "a.txt#1:new"])
        manifest.mark_pending("b.txt", ["b.txt#0:x"])  # a file seen for the first time
    entry = manifest.get("a.txt")
    assert entry is not None
    assert entry.stored_keys == {"a.txt#0", "a.txt#0:new", "a.txt#1:new"}
    # Interrupted: the file must be read again even though it did not change.
    assert [s.source for s in manifest.compare(scan(tmp_path)).modified] == ["a.txt"]
    with manifest.transaction():
        manifest.mark_pending("a.txt", ["a.txt#0:newer"])  # a second attempt keeps the first's
    entry = manifest.get("a.txt")
    assert entry is not None and set(entry.pending_keys) == {
        "a.txt#0:new",
        "a.txt#1:new",
        "a.txt#0:newer",
    }
    with manifest.transaction():
        manifest.record_document(
            load_document(tmp_path / "a.txt", root=tmp_path), ["a.txt#0:newer"]
        )
    entry = manifest.get("a.txt")
    assert entry is not None and entry.pending_keys == () and entry.chunk_keys == ("a.txt#0:newer",)
    pending_only = manifest.get("b.txt")
    assert pending_only is not None and pending_only.pending_keys == ("b.txt#0:x",)
