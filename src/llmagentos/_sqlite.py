"""SQLite set-up shared by every store that keeps a file of its own."""

from __future__ import annotations

import sqlite3
import time

__all__ = ["use_wal"]


def use_wal(db: sqlite3.Connection, *, timeout_s: float = 10.0) -> None:
    """Put ``db`` in WAL mode, waiting up to ``timeout_s`` for another connection's lock.

    SQLite answers a journal-mode change that meets another connection's lock with
    SQLITE_BUSY at once, without calling its busy handler, so two processes opening a
    new file together (gateway workers, a run and ``status`` beside it) would otherwise
    see "database is locked" however long the busy timeout.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while True:
        try:
            db.execute("pragma journal_mode=wal")
            return
        except sqlite3.OperationalError as err:
            if err.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
