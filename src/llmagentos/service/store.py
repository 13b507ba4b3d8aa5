"""Session state kept outside a replica, so another replica can take a session over.

With a store, a module service saves each session's agent (pickled) after every call,
together with the call's idempotency key and reply, in one SQLite transaction. A
replica that gets a session whose stored version is newer than its own loads it first;
a call whose key matches the last one applied is answered from the stored reply
instead of being applied again. So when a replica dies mid-call and the gateway sends
the call to another replica, the step is applied exactly once: never lost (the other
replica has the state as of the last completed call) and never doubled (a call the
dead replica completed is recognised by its key).

One SQLite file (WAL) shared by the replicas of one machine; every replica of a
service must be built from the same config.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SessionStore", "StoredSession"]

_SCHEMA = """
create table if not exists sessions (
    session text primary key, version integer not null, state blob not null,
    last_key text, last_reply text, updated real not null
);
"""


@dataclass(frozen=True, slots=True)
class StoredSession:
    version: int
    state: bytes
    last_key: str | None
    last_reply: str | None


class SessionStore:
    """Sessions' pickled agents by session id, with the last applied call."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")
        self._db.execute("pragma busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def load(self, session: str) -> StoredSession | None:
        with self._lock:
            row = self._db.execute(
                "select version, state, last_key, last_reply from sessions where session = ?",
                (session,),
            ).fetchone()
        return None if row is None else StoredSession(int(row[0]), bytes(row[1]), row[2], row[3])

    def version(self, session: str) -> int:
        with self._lock:
            row = self._db.execute(
                "select version from sessions where session = ?", (session,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def save(
        self, session: str, version: int, state: bytes, key: str | None, reply: str | None
    ) -> bool:
        """Store version ``version`` if the stored one is ``version - 1``; else False."""
        with self._lock:
            if version == 1:
                cursor = self._db.execute(
                    "insert or ignore into sessions values (?, 1, ?, ?, ?, ?)",
                    (session, state, key, reply, time.time()),
                )
            else:
                cursor = self._db.execute(
                    "update sessions set version = ?, state = ?, last_key = ?, last_reply = ?, "
                    "updated = ? where session = ? and version = ?",
                    (version, state, key, reply, time.time(), session, version - 1),
                )
            return cursor.rowcount == 1

    def drop(self, session: str) -> None:
        with self._lock:
            self._db.execute("delete from sessions where session = ?", (session,))

    def close(self) -> None:
        self._db.close()
