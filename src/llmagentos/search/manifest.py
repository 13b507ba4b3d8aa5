"""The index manifest: which files are indexed, at which content, under which chunk keys.

An incremental re-index :func:`scan` s the folder (one ``stat`` per file, no reading),
then :meth:`Manifest.compare` sorts the files into new, modified, unchanged and deleted.
A file whose size and modification time match its entry is unchanged without being
read; a modified one is read and hashed, and if its SHA-256 still matches (a ``touch``,
a copy) only its times are updated. A file modified within :data:`RACY_WINDOW_NS` before
it was indexed is always re-hashed: a second edit in the same clock tick would
otherwise keep the same mtime (git's "racily clean" case).

The manifest lives in a table of a SQLite connection the caller hands over, so it can
share a transaction with the chunks when the store offers one. No method commits; the
caller does (``with manifest.transaction(): ...``). :meth:`Manifest.open` makes a small
SQLite file of its own, for a store it cannot share a transaction with: then the
indexer writes ahead. Before it writes a document's chunks it marks their keys
*pending* (:meth:`Manifest.mark_pending`); only after they are stored does it record the
document (which clears them). A run killed in between leaves the entry pending, so
the next run redoes that document (its chunk keys make the redo replace, not add) and
deletes whatever pending keys the new content no longer has: no duplicate, no orphan.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmagentos._sqlite import use_wal
from llmagentos.exceptions import ConfigError
from llmagentos.search.documents import Document, find_documents, source_of

__all__ = ["RACY_WINDOW_NS", "Changes", "FileState", "Manifest", "ManifestEntry", "scan"]

RACY_WINDOW_NS = 2_000_000_000
"""Files modified this close before being indexed are re-hashed on the next scan."""

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class FileState:
    """A file as seen by ``stat``: its source (relative path), path, mtime and size."""

    source: str
    path: Path
    mtime_ns: int
    size: int


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What the manifest remembers of one indexed (or failed) file."""

    source: str
    sha256: str
    mtime_ns: int
    size: int
    chunk_keys: tuple[str, ...]
    error: str | None
    indexed_at_ns: int
    pending_keys: tuple[str, ...] = ()

    @property
    def stored_keys(self) -> set[str]:
        """Every key that may be in the store for this file: recorded and pending."""
        return {*self.chunk_keys, *self.pending_keys}


@dataclass(frozen=True, slots=True)
class Changes:
    """The outcome of :meth:`Manifest.compare`; ``to_read`` = new + modified."""

    new: list[FileState] = field(default_factory=list)
    modified: list[FileState] = field(default_factory=list)
    unchanged: list[FileState] = field(default_factory=list)
    deleted: list[ManifestEntry] = field(default_factory=list)
    still_failing: list[ManifestEntry] = field(default_factory=list)

    @property
    def to_read(self) -> list[FileState]:
        return [*self.new, *self.modified]


def scan(root: str | os.PathLike[str]) -> list[FileState]:
    """Every supported file under ``root`` (see ``find_documents``), with its stat.

    A file that vanishes between listing and ``stat`` is left out (and so, if it was
    indexed, comes out as deleted).
    """
    top = Path(root)
    states = []
    for path in find_documents(top):
        try:
            stat = path.stat()
        except OSError:
            continue
        states.append(FileState(source_of(path, top), path, stat.st_mtime_ns, stat.st_size))
    return states


class Manifest:
    """The manifest table on a SQLite connection (see the module docstring)."""

    def __init__(self, connection: sqlite3.Connection, *, table: str = "search_manifest") -> None:
        if not _TABLE_NAME.match(table):
            raise ConfigError("table", f"must be an SQL identifier, got {table!r}")
        self.connection = connection
        self.table = table
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " source TEXT PRIMARY KEY, sha256 TEXT NOT NULL, mtime_ns INTEGER NOT NULL,"
            " size INTEGER NOT NULL, chunk_keys TEXT NOT NULL, error TEXT,"
            " indexed_at_ns INTEGER NOT NULL, pending_keys TEXT)"
        )

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Manifest:
        """A manifest in its own SQLite file (created with its folder if missing).

        WAL journal: a committed transaction survives the process being killed.
        """
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(file)
        use_wal(connection)
        connection.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process
        return cls(connection)

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit what the block wrote, or roll it all back if it raised."""
        with self.connection:
            yield

    # --- reading ---

    def get(self, source: str) -> ManifestEntry | None:
        row = self.connection.execute(
            f"SELECT * FROM {self.table} WHERE source = ?", (source,)
        ).fetchone()
        return None if row is None else _entry(row)

    def entries(self) -> dict[str, ManifestEntry]:
        rows = self.connection.execute(f"SELECT * FROM {self.table} ORDER BY source")
        return {row[0]: _entry(row) for row in rows}

    def compare(self, files: Iterable[FileState], *, rehash: bool = False) -> Changes:
        """Sort ``files`` against the manifest; ``rehash`` treats every known file as modified."""
        known = self.entries()
        changes = Changes()
        for state in files:
            entry = known.pop(state.source, None)
            if entry is None:
                changes.new.append(state)
            elif rehash or entry.pending_keys or _looks_modified(entry, state):
                changes.modified.append(state)
            else:
                changes.unchanged.append(state)
                if entry.error is not None:
                    changes.still_failing.append(entry)
        changes.deleted.extend(known.values())
        return changes

    def is_current(self, source: str, sha256: str) -> bool:
        """Whether ``source`` is indexed, without error, at content ``sha256``."""
        entry = self.get(source)
        return entry is not None and entry.error is None and entry.sha256 == sha256

    # --- writing (inside the caller's transaction) ---

    def record(
        self,
        source: str,
        *,
        sha256: str,
        mtime_ns: int,
        size: int,
        chunk_keys: Iterable[str] = (),
        error: str | None = None,
    ) -> None:
        """Remember ``source`` as indexed at this content, or as failed with ``error``."""
        self.connection.execute(
            f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            (source, sha256, mtime_ns, size, json.dumps(list(chunk_keys)), error, time.time_ns()),
        )

    def mark_pending(self, source: str, keys: Iterable[str]) -> None:
        """Note that chunks under ``keys`` are about to be written for ``source``.

        Keys pending from an interrupted run are kept too, until :meth:`record` clears
        them: the indexer deletes those the new content does not have.
        """
        entry = self.get(source)
        pending = sorted({*keys, *(entry.pending_keys if entry else ())})
        if entry is None:
            self.connection.execute(
                f"INSERT INTO {self.table} VALUES (?, '', -1, -1, '[]', NULL, ?, ?)",
                (source, time.time_ns(), json.dumps(pending)),
            )
        else:
            self.connection.execute(
                f"UPDATE {self.table} SET pending_keys = ? WHERE source = ?",
                (json.dumps(pending), source),
            )

    def record_document(self, document: Document, chunk_keys: Iterable[str]) -> None:
        """:meth:`record` for a loaded document and the keys of its chunks."""
        self.record(
            document.source,
            sha256=document.sha256,
            mtime_ns=document.mtime_ns,
            size=document.size,
            chunk_keys=chunk_keys,
        )

    def record_failure(self, state: FileState, error: str, *, sha256: str = "") -> None:
        """Remember that ``state``'s file failed, so it is retried only once it changes."""
        self.record(
            state.source, sha256=sha256, mtime_ns=state.mtime_ns, size=state.size, error=error
        )

    def forget(self, source: str) -> ManifestEntry | None:
        """Remove ``source``'s entry; returns what it was (its chunk keys to delete)."""
        entry = self.get(source)
        self.connection.execute(f"DELETE FROM {self.table} WHERE source = ?", (source,))
        return entry


def _entry(row: tuple[Any, ...]) -> ManifestEntry:
    source, sha256, mtime_ns, size, keys, error, indexed_at_ns, pending = row
    return ManifestEntry(
        source=str(source),
        sha256=str(sha256),
        mtime_ns=int(mtime_ns),
        size=int(size),
        chunk_keys=tuple(json.loads(keys)),
        error=None if error is None else str(error),
        indexed_at_ns=int(indexed_at_ns),
        pending_keys=tuple(json.loads(pending)) if pending else (),
    )


def _looks_modified(entry: ManifestEntry, state: FileState) -> bool:
    if entry.mtime_ns != state.mtime_ns or entry.size != state.size:
        return True
    # Modified just before it was read: a later edit in the same tick keeps the mtime.
    return entry.mtime_ns >= entry.indexed_at_ns - RACY_WINDOW_NS
