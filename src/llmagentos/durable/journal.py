"""The journal: one SQLite file per durable run, written step by step.

It holds everything a run needs to survive a crash and everything an operator needs
to see what happened:

- ``steps``: every completed step's record (observation, features, action, reason,
  reward, flags, info), committed before the next step begins;
- ``episodes``: every finished episode's result;
- ``effects``: tool and model calls by idempotency key, with their results, so a
  resumed run never repeats a call that completed;
- ``approvals``: requests for a human decision and the decisions;
- ``audit``: the trail of actions, tool calls, refusals, pauses and budget stops;
- ``meta`` and ``status``: what the run is (its config) and where it stands.

WAL mode with ``synchronous=NORMAL``: a commit survives the process being killed
(SIGKILL included); only an operating-system crash can lose the last commits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmagentos._json import jsonable
from llmagentos.exceptions import JournalError

__all__ = [
    "JOURNAL_FORMAT",
    "RUN_STATES",
    "Approval",
    "AuditEntry",
    "Journal",
    "RunStatus",
]

JOURNAL_FORMAT = "llmagentos.journal/1"
RUN_STATES = ("new", "running", "paused", "completed", "failed", "budget_exceeded", "interrupted")

_SCHEMA = """
create table if not exists meta (key text primary key, value text not null);
create table if not exists status (
    one integer primary key check (one = 1),
    state text not null, detail text, updated real not null,
    active_seconds real not null default 0
);
create table if not exists steps (
    n integer primary key, segment text not null, episode integer not null,
    step integer not null, record text not null
);
create table if not exists episodes (
    segment text not null, idx integer not null, result text not null,
    primary key (segment, idx)
);
create table if not exists effects (
    key text primary key, kind text not null, name text not null, request text,
    status text not null, result text, started real, finished real
);
create table if not exists approvals (
    key text primary key, tool text not null, arguments text, reason text,
    status text not null, requested real not null, decided real, decided_by text, note text
);
create table if not exists audit (
    seq integer primary key, at real not null, n integer, kind text not null,
    subject text, reason text, detail text
);
"""


def _dumps(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class RunStatus:
    """Where a run stands: its state, why, and the time it has been running."""

    state: str
    detail: str | None
    updated: float
    active_seconds: float


@dataclass(frozen=True, slots=True)
class Approval:
    """A request for a human decision on a sensitive tool call."""

    key: str
    tool: str
    arguments: Any
    reason: str | None
    status: str  # pending, approved, refused
    requested: float
    decided: float | None = None
    decided_by: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit trail."""

    seq: int
    at: float
    n: int | None
    kind: str
    subject: str | None
    reason: str | None
    detail: Any


class Journal:
    """A durable run's SQLite journal (safe to share between threads of one process).

    Args:
        path: the database file; created with its folder when missing.
        create: ``False`` refuses a missing file (for commands that inspect a run).

    Raises:
        JournalError: the file cannot be opened or is not a journal.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise JournalError(f"no journal at {self.path}")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("pragma journal_mode=wal")
            self._db.execute("pragma synchronous=normal")
            self._db.execute("pragma busy_timeout=10000")
            self._db.executescript(_SCHEMA)
            found = self._meta("format")
            if found is None:
                self._db.execute("insert into meta values ('format', ?)", (JOURNAL_FORMAT,))
                self._db.execute(
                    "insert or ignore into status values (1, 'new', null, ?, 0)", (time.time(),)
                )
            elif found != JOURNAL_FORMAT:
                raise JournalError(f"{self.path} is a {found} journal, expected {JOURNAL_FORMAT}")
        except sqlite3.DatabaseError as err:
            raise JournalError(f"cannot open journal {self.path}: {err}") from err
        self._lock = threading.RLock()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("select value from meta where key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- identity -------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        """A JSON value stored with :meth:`set_meta`, or ``None``."""
        text = self._meta(key)
        return None if text is None else json.loads(text)

    def set_meta(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute(
                "insert into meta values (?, ?) "
                "on conflict(key) do update set value = excluded.value",
                (key, _dumps(value)),
            )

    def bind(self, fingerprint: dict[str, Any]) -> bool:
        """Tie the journal to one run; return whether it already held that run.

        Raises:
            JournalError: the journal holds a different run (naming what differs).
        """
        wanted = jsonable(fingerprint)
        found = self.get_meta("fingerprint")
        if found is None:
            self.set_meta("fingerprint", wanted)
            return False
        if found != wanted:
            differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise JournalError(
                f"{self.path} belongs to another run (differs in: {', '.join(differ)}); "
                "use a new journal path or the same run settings"
            )
        return True

    # -- status ---------------------------------------------------------------------------

    def status(self) -> RunStatus:
        row = self._db.execute(
            "select state, detail, updated, active_seconds from status where one = 1"
        ).fetchone()
        return RunStatus(str(row[0]), row[1], float(row[2]), float(row[3]))

    def set_status(self, state: str, detail: str | None = None) -> None:
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}; one of {RUN_STATES}")
        with self._lock:
            self._db.execute(
                "update status set state = ?, detail = ?, updated = ? where one = 1",
                (state, detail, time.time()),
            )

    def add_active_seconds(self, seconds: float) -> None:
        with self._lock:
            self._db.execute(
                "update status set active_seconds = active_seconds + ? where one = 1", (seconds,)
            )

    # -- steps and episodes ---------------------------------------------------------------

    def step_count(self) -> int:
        row = self._db.execute("select count(*) from steps").fetchone()
        return int(row[0])

    def append_step(self, n: int, segment: str, episode: int, step: int, record: Any) -> None:
        """Commit step ``n`` (global index); ``record`` is JSON-able data."""
        self.append_step_text(n, segment, episode, step, _dumps(record))

    def append_step_text(self, n: int, segment: str, episode: int, step: int, text: str) -> None:
        """Commit step ``n`` given as JSON text already."""
        with self._lock:
            self._db.execute(
                "insert into steps values (?, ?, ?, ?, ?)", (n, segment, episode, step, text)
            )

    def steps(self, start: int = 0) -> Iterator[dict[str, Any]]:
        """The recorded steps from global index ``start`` on, oldest first."""
        rows = self._db.execute(
            "select record from steps where n >= ? order by n", (start,)
        ).fetchall()
        for (text,) in rows:
            yield json.loads(text)

    def step(self, n: int) -> dict[str, Any] | None:
        row = self._db.execute("select record from steps where n = ?", (n,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def append_episode(self, segment: str, index: int, result: Any) -> None:
        with self._lock:
            self._db.execute(
                "insert or ignore into episodes values (?, ?, ?)",
                (segment, index, _dumps(result)),
            )

    def episodes(self, segment: str | None = None) -> list[dict[str, Any]]:
        query = "select result from episodes"
        args: tuple[Any, ...] = ()
        if segment is not None:
            query += " where segment = ?"
            args = (segment,)
        rows = self._db.execute(query + " order by rowid", args).fetchall()
        return [json.loads(text) for (text,) in rows]

    # -- effects --------------------------------------------------------------------------

    def effect(self, key: str) -> tuple[str, Any] | None:
        """``(status, result)`` of the call ``key`` (``started`` or ``done``), or ``None``."""
        row = self._db.execute(
            "select status, result from effects where key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return str(row[0]), None if row[1] is None else json.loads(row[1])

    def effect_started(self, key: str, kind: str, name: str, request: Any) -> None:
        with self._lock:
            self._db.execute(
                "insert into effects values (?, ?, ?, ?, 'started', null, ?, null) "
                "on conflict(key) do update set started = excluded.started",
                (key, kind, name, _dumps(request), time.time()),
            )

    def effect_done(
        self, key: str, result: Any, *, audit: tuple[int | None, str, str, str | None, Any] | None
    ) -> None:
        """Record a call's result (and its audit line, in the same transaction)."""
        with self._lock:
            self._db.execute("begin")
            try:
                self._db.execute(
                    "update effects set status = 'done', result = ?, finished = ? where key = ?",
                    (_dumps(result), time.time(), key),
                )
                if audit is not None:
                    self._insert_audit(*audit)
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise

    def effect_keys(self, status: str = "done") -> list[str]:
        rows = self._db.execute("select key from effects where status = ?", (status,))
        return [str(key) for (key,) in rows.fetchall()]

    # -- approvals ------------------------------------------------------------------------

    def request_approval(self, key: str, tool: str, arguments: Any, reason: str | None) -> None:
        with self._lock:
            self._db.execute(
                "insert or ignore into approvals "
                "values (?, ?, ?, ?, 'pending', ?, null, null, null)",
                (key, tool, _dumps(arguments), reason, time.time()),
            )

    def approval(self, key: str) -> Approval | None:
        row = self._db.execute("select * from approvals where key = ?", (key,)).fetchone()
        return None if row is None else _approval(row)

    def approvals(self, status: str | None = None) -> list[Approval]:
        query, args = "select * from approvals", ()
        if status is not None:
            query, args = query + " where status = ?", (status,)  # type: ignore[assignment]
        return [_approval(row) for row in self._db.execute(query + " order by requested", args)]

    def decide(self, key: str, *, approve: bool, by: str, note: str | None = None) -> Approval:
        """Approve or refuse a pending request.

        Raises:
            JournalError: no such request, or it was decided already.
        """
        with self._lock:
            found = self.approval(key)
            if found is None:
                keys = ", ".join(a.key for a in self.approvals("pending")) or "none"
                raise JournalError(f"no approval request {key!r} in {self.path}; pending: {keys}")
            if found.status != "pending":
                raise JournalError(f"request {key!r} was already {found.status}")
            self._db.execute(
                "update approvals set status = ?, decided = ?, decided_by = ?, note = ? "
                "where key = ?",
                ("approved" if approve else "refused", time.time(), by, note, key),
            )
        decided = self.approval(key)
        assert decided is not None
        return decided

    # -- audit ----------------------------------------------------------------------------

    def _insert_audit(
        self, n: int | None, kind: str, subject: str, reason: str | None, detail: Any
    ) -> None:
        self._db.execute(
            "insert into audit (at, n, kind, subject, reason, detail) values (?, ?, ?, ?, ?, ?)",
            (time.time(), n, kind, subject, reason, _dumps(detail)),
        )

    def audit(
        self, kind: str, subject: str, *, n: int | None = None, reason: str | None = None,
        detail: Any = None,
    ) -> None:  # fmt: skip
        with self._lock:
            self._insert_audit(n, kind, subject, reason, detail)

    def audit_trail(self, kinds: tuple[str, ...] = ()) -> list[AuditEntry]:
        query, args = "select * from audit", ()
        if kinds:
            query += f" where kind in ({', '.join('?' * len(kinds))})"
            args = kinds  # type: ignore[assignment]
        return [
            AuditEntry(int(r[0]), float(r[1]), r[2], str(r[3]), r[4], r[5], json.loads(r[6]))
            for r in self._db.execute(query + " order by seq", args).fetchall()
        ]


def _approval(row: tuple[Any, ...]) -> Approval:
    key, tool, arguments, reason, status, requested, decided, by, note = row
    return Approval(
        key, tool, None if arguments is None else json.loads(arguments), reason, status,
        requested, decided, by, note,
    )  # fmt: skip
