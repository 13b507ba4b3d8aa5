"""Stores that share a SQLite file open it together without "database is locked"."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from llmagentos._sqlite import use_wal
from llmagentos.durable import Journal


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("pragma busy_timeout=10000")
    return db


def test_wal_switch_waits_for_a_creator_holding_the_lock(tmp_path: Path):
    path = tmp_path / "new.db"
    creator, opener = _connect(path), _connect(path)
    creator.execute("begin immediate")
    creator.execute("create table t (a)")
    # What use_wal works around: SQLite fails the switch at once, busy timeout or not.
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        opener.execute("pragma journal_mode=wal")
    released = threading.Timer(0.3, lambda: creator.execute("commit"))
    released.start()
    started = time.monotonic()
    use_wal(opener)
    released.join()
    assert time.monotonic() - started >= 0.25  # it waited for the commit, then switched
    assert opener.execute("pragma journal_mode").fetchone() == ("wal",)


def test_wal_switch_gives_up_after_its_timeout(tmp_path: Path):
    path = tmp_path / "held.db"
    holder, opener = _connect(path), _connect(path)
    holder.execute("begin immediate")
    holder.execute("create table t (a)")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        use_wal(opener, timeout_s=0.2)
    holder.execute("rollback")


def _open_together(path: Path, openers: int) -> tuple[list[str], list[BaseException]]:
    start = threading.Barrier(openers)
    run_ids: list[str] = []
    errors: list[BaseException] = []

    def open_journal() -> None:
        start.wait()
        try:
            with Journal(path) as journal:
                run_ids.append(journal.run_id)
        except BaseException as err:  # reported by the caller
            errors.append(err)

    threads = [threading.Thread(target=open_journal) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return run_ids, errors


def test_a_new_journal_opened_by_several_at_once_is_one_journal(tmp_path: Path):
    """A run and readers beside it (``status``, a dashboard) may open a new path together."""
    for attempt in range(40):
        path = tmp_path / f"run-{attempt}.db"
        path.touch()  # the first opener's connect made the file; its schema is not in yet
        run_ids, errors = _open_together(path, 4)
        assert errors == []
        assert len(run_ids) == 4 and len(set(run_ids)) == 1
