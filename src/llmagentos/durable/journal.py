"""The journal: one SQLite file per durable run, and the run's steps log beside it.

It holds everything a run needs to survive a crash and everything an operator needs
to see what happened:

- steps: every completed step's record (observation, features, action, reason,
  reward, flags, info), logged before the next step begins. They live in the steps
  log (``run.db-steps``, :mod:`llmagentos.durable.steplog`): one ``write()`` per step
  instead of a SQLite commit. Journals of format ``llmagentos.journal/2`` kept them in
  the ``steps`` table; those rows are read as the run's first steps;
- ``episodes``: every finished episode's result;
- ``effects``: tool and model calls by idempotency key, each with the digest of what
  it is (:mod:`llmagentos.durable.digest`) and its result, so a resumed run never
  repeats a call that completed, and never gets a result recorded for another call;
- ``approvals``: requests for a human decision, each bound to the digest of the call
  it is for, and the decisions;
- ``audit``: the trail of actions, tool calls, refusals, pauses and budget stops;
- ``meta`` and ``status``: what the run is (its config, its run id) and where it stands.

Everything but steps is committed per change (WAL): ``synchronous=NORMAL`` in the
``process`` durability mode (a commit survives the process being killed, SIGKILL
included), ``FULL`` in ``power_loss`` mode, where the steps log is also synced before
each of those commits (see :mod:`~llmagentos.durable.steplog`).

Opening a file never changes one that is not a journal of this format (a text file,
another program's database, a journal of an older format): it is refused with a
:class:`~llmagentos.exceptions.JournalError` that says what it is. A new journal is
created in one transaction, so a crash cannot leave half a journal behind.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmagentos._json import jsonable
from llmagentos._sqlite import use_wal
from llmagentos.durable.digest import call_digest, canonical_json, model_digest
from llmagentos.durable.entries import Approval, AuditEntry, Effect, RunStatus
from llmagentos.durable.journal_steps import JOURNAL_FORMAT, JournalSteps
from llmagentos.durable.scope import new_run_id
from llmagentos.durable.steplog import StepLog, check_durability, log_path
from llmagentos.exceptions import JournalError

__all__ = [
    "JOURNAL_FORMAT",
    "RUN_STATES",
    "Approval",
    "AuditEntry",
    "Effect",
    "Journal",
    "RunStatus",
]

_STEPS_IN_SQLITE = "llmagentos.journal/2"  # read and resumed; upgraded by the first step
_OLD_FORMATS = ("llmagentos.journal/1",)
RUN_STATES = ("new", "running", "paused", "completed", "failed", "budget_exceeded", "interrupted")
_BUSY_TIMEOUT_S = 10.0
_RUN_ID = re.compile(r"[A-Za-z0-9]{8,32}")
_MIN_DIGEST_PREFIX = 8

_SCHEMA = (
    "create table meta (key text primary key, value text not null)",
    """create table status (
        one integer primary key check (one = 1),
        state text not null, detail text, updated real not null,
        active_seconds real not null default 0
    )""",
    """create table steps (
        n integer primary key, segment text not null, episode integer not null,
        step integer not null, record text not null
    )""",
    """create table episodes (
        segment text not null, idx integer not null, result text not null,
        primary key (segment, idx)
    )""",
    """create table effects (
        key text primary key, kind text not null, name text not null,
        request text not null, digest text not null, status text not null, result text,
        started real, finished real
    )""",
    """create table approvals (
        key text primary key, tool text not null, arguments text not null,
        digest text not null, reason text, status text not null, requested real not null,
        decided real, decided_by text, note text
    )""",
    """create table audit (
        seq integer primary key, at real not null, n integer, kind text not null,
        subject text, reason text, detail text
    )""",
)

_DIGESTS: dict[str, Callable[[str, Any], str]] = {"tool": call_digest, "model": model_digest}


def _dumps(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))


class Journal(JournalSteps):
    """A durable run's journal (safe to share between threads of one process).

    Opening one only reads it: the steps log is created, or its torn tail cut off, by
    the first step appended, so a reader never changes a running journal.

    Args:
        path: the database file; created with its folder when missing.
        create: ``False`` refuses a missing file (for commands that inspect a run).
        durability: ``process`` (survives SIGKILL) or ``power_loss`` (syncs to disk;
            see :mod:`llmagentos.durable.steplog`). Readers may pass either.

    Raises:
        JournalError: the file cannot be opened or is not a journal of this format
            (nothing in it was changed).
        ConfigError: ``durability`` is not a mode.
    """

    def __init__(
        self, path: str | Path, *, create: bool = True, durability: str = "process"
    ) -> None:
        self.path = Path(path)
        self.durability = check_durability(durability)
        self._lock = threading.RLock()
        memory = str(path) == ":memory:"
        self._log = StepLog(None if memory else log_path(self.path), durability=durability)
        if not create and not self.path.is_file():
            raise JournalError(f"no journal at {self.path}")
        if not memory and not self.path.exists() and self._log.exists():
            raise self._orphan_log()
        try:
            if create and str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as err:
            raise JournalError(f"cannot open journal {self.path}: {err}") from err
        try:
            self._db.execute(f"pragma busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
            self._open(create)
            sync = "full" if durability == "power_loss" else "normal"
            self._db.execute(f"pragma synchronous={sync}")
            (rows,) = self._db.execute("select count(*) from steps").fetchone()
            self._rows = int(rows)  # steps a journal/2 kept in SQLite; no one adds to them
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise JournalError(f"cannot open journal {self.path}: {err}") from err
        except BaseException:
            self._db.close()
            raise

    def _tables(self) -> set[str]:
        rows = self._db.execute("select name from sqlite_master where type = 'table'")
        return {str(name) for (name,) in rows.fetchall()}

    def _open(self, create: bool) -> None:
        """Check what the file is before anything writes to it; create a new journal whole."""
        if not self._tables():
            if not create:
                raise JournalError(f"{self.path} is an empty file, not a journal")
            if self._log.exists():
                raise self._orphan_log()
            use_wal(self._db, timeout_s=_BUSY_TIMEOUT_S)
            self._db.execute("begin immediate")
            try:
                if not self._tables():  # nobody created it while we waited for the lock
                    for statement in _SCHEMA:
                        self._db.execute(statement)
                    self._db.executemany(
                        "insert into meta values (?, ?)",
                        [("format", JOURNAL_FORMAT), ("run_id", json.dumps(new_run_id()))],
                    )
                    self._db.execute(
                        "insert into status values (1, 'new', null, ?, 0)", (time.time(),)
                    )
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
        self._check_format()
        use_wal(self._db, timeout_s=_BUSY_TIMEOUT_S)

    def _check_format(self) -> None:
        if "meta" not in self._tables():
            raise JournalError(
                f"{self.path} is not an llmagentos journal (an SQLite database of something "
                "else); nothing in it was changed"
            )
        found = self._meta("format")
        if found in _OLD_FORMATS:
            raise JournalError(
                f"{self.path} is an {found} journal, written by an older llmagentos: its "
                "recorded calls and approvals are bound to their position only, not to what "
                "they are, so it cannot be resumed safely. Finish it with the version that "
                "wrote it, or start the run again in a new folder"
            )
        if found not in (JOURNAL_FORMAT, _STEPS_IN_SQLITE):
            what = "no format mark" if found is None else f"format {found!r}"
            raise JournalError(
                f"{self.path} is not a journal of this llmagentos ({what}, expected "
                f"{JOURNAL_FORMAT}); nothing in it was changed"
            )
        run_id = self.get_meta("run_id")
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise JournalError(f"{self.path}: the journal's run id {run_id!r} is corrupt")
        self.run_id: str = run_id

    def _orphan_log(self) -> JournalError:
        return JournalError(
            f"{self._log.path} is a steps log without its journal {self.path.name} (another "
            "run's?); move it away to start a new run here"
        )

    def close(self) -> None:
        """Close the journal (in ``power_loss`` mode, syncing the last steps first)."""
        with self._lock:
            try:
                self._log.close()
            finally:
                self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("select value from meta where key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _corrupt(self, what: str, err: object) -> JournalError:
        return JournalError(f"{self.path}: {what} is corrupt ({err}); was the journal edited?")

    # -- identity -------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        """A JSON value stored with :meth:`set_meta`, or ``None``."""
        text = self._meta(key)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as err:
            raise self._corrupt(f"meta {key!r}", err) from err

    def set_meta(self, key: str, value: Any) -> None:
        with self._lock:
            self._log.sync()
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
        if not isinstance(found, dict):
            raise self._corrupt("the run's fingerprint", f"not a table: {found!r:.60}")
        if found != wanted:
            differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise JournalError(
                f"{self.path} belongs to another run (differs in: {', '.join(differ)}); "
                "use a new journal path or the same run settings"
            )
        return True

    # -- status ---------------------------------------------------------------------------

    def status(self) -> RunStatus:
        with self._lock:
            row = self._db.execute(
                "select state, detail, updated, active_seconds from status where one = 1"
            ).fetchone()
        if row is None:
            raise self._corrupt("the run's status", "no status row")
        return RunStatus(str(row[0]), row[1], float(row[2]), float(row[3]))

    def set_status(self, state: str, detail: str | None = None) -> None:
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}; one of {RUN_STATES}")
        with self._lock:
            self._log.sync()
            self._db.execute(
                "update status set state = ?, detail = ?, updated = ? where one = 1",
                (state, detail, time.time()),
            )

    def add_active_seconds(self, seconds: float) -> None:
        with self._lock:
            self._log.sync()
            self._db.execute(
                "update status set active_seconds = active_seconds + ? where one = 1", (seconds,)
            )

    # -- steps and episodes ---------------------------------------------------------------

    def append_episode(self, segment: str, index: int, result: Any) -> None:
        with self._lock:
            self._log.sync()
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
        with self._lock:
            rows = self._db.execute(query + " order by rowid", args).fetchall()
        return [json.loads(text) for (text,) in rows]

    # -- effects --------------------------------------------------------------------------

    def effect(self, key: str) -> Effect | None:
        """The recorded call ``key``, checked whole, or ``None``.

        Raises:
            JournalError: the row is corrupt: its request does not hash to its digest,
                or its result is not JSON (a journal edited by hand).
        """
        with self._lock:
            row = self._db.execute(
                "select key, kind, name, request, digest, status, result from effects "
                "where key = ?",
                (key,),
            ).fetchone()
        return None if row is None else self._effect(row)

    def _effect(self, row: tuple[Any, ...]) -> Effect:
        key, kind, name, request_text, digest, status, result_text = row
        what = f"the recorded call {key!r}"
        try:
            request = json.loads(request_text)
            result = None if result_text is None else json.loads(result_text)
        except (TypeError, ValueError) as err:
            raise self._corrupt(what, err) from err
        hasher = _DIGESTS.get(kind)
        if hasher is None or status not in ("started", "done"):
            raise self._corrupt(what, f"kind {kind!r}, status {status!r}")
        if hasher(str(name), request) != digest:
            raise self._corrupt(what, "its request does not match its digest")
        if status == "done" and not isinstance(result, dict):
            raise self._corrupt(what, "no result")
        return Effect(key, kind, str(name), request, str(digest), status, result)

    def effect_started(self, key: str, kind: str, name: str, request: Any, digest: str) -> None:
        """Record that the call ``key`` (``request`` hashing to ``digest``) is under way.

        A row for the same key and digest (a call cut off mid-flight, run again) keeps
        its record; one for another digest is never overwritten.
        """
        with self._lock:
            self._log.sync()
            self._db.execute(
                "insert into effects values (?, ?, ?, ?, ?, 'started', null, ?, null) "
                "on conflict(key) do update set started = excluded.started "
                "where effects.digest = excluded.digest and effects.status = 'started'",
                (key, kind, name, canonical_json(request), digest, time.time()),
            )

    def effect_done(
        self, key: str, result: Any, *, audit: tuple[int | None, str, str, str | None, Any] | None
    ) -> None:
        """Record a call's result (and its audit line, in the same transaction)."""
        with self._lock:
            self._log.sync()  # power_loss: no commit may reach the disk before its steps
            self._db.execute("begin")
            try:
                self._db.execute(
                    "update effects set status = 'done', result = ?, finished = ? "
                    "where key = ? and status = 'started'",
                    (_dumps(result), time.time(), key),
                )
                if audit is not None:
                    self._insert_audit(*audit)
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise

    def effect_keys(self, status: str = "done") -> list[str]:
        with self._lock:
            rows = self._db.execute("select key from effects where status = ?", (status,))
            return [str(key) for (key,) in rows.fetchall()]

    def verify(self) -> None:
        """Check every recorded call and approval request against its digest, and the
        steps log's frames (a resume decodes every step before it writes anything).

        Raises:
            JournalError: the first corrupt row or frame, named.
        """
        with self._lock:
            effects = self._db.execute(
                "select key, kind, name, request, digest, status, result from effects"
            ).fetchall()
            approvals = self._db.execute("select * from approvals").fetchall()
        for row in effects:
            self._effect(row)
        for row in approvals:
            self._approval(row)
        self.step_count()

    # -- approvals ------------------------------------------------------------------------

    def request_approval(
        self, key: str, tool: str, arguments: Any, digest: str, reason: str | None,
        *, audit: tuple[int | None, str, str, str | None, Any] | None = None,
    ) -> None:  # fmt: skip
        """Record a request for the call ``key`` (``tool`` with ``arguments``, hashing to
        ``digest``), and its audit line in the same transaction. A request already
        recorded for the key is kept as it is."""
        with self._lock:
            self._log.sync()  # power_loss: no commit may reach the disk before its steps
            self._db.execute("begin")
            try:
                self._db.execute(
                    "insert or ignore into approvals "
                    "values (?, ?, ?, ?, ?, 'pending', ?, null, null, null)",
                    (key, tool, canonical_json(arguments), digest, reason, time.time()),
                )
                if audit is not None:
                    self._insert_audit(*audit)
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise

    def approval(self, key: str) -> Approval | None:
        """The request for the call ``key``, checked against its digest, or ``None``."""
        with self._lock:
            row = self._db.execute("select * from approvals where key = ?", (key,)).fetchone()
        return None if row is None else self._approval(row)

    def approvals(self, status: str | None = None) -> list[Approval]:
        query, args = "select * from approvals", ()
        if status is not None:
            query, args = query + " where status = ?", (status,)  # type: ignore[assignment]
        with self._lock:
            rows = self._db.execute(query + " order by requested", args).fetchall()
        return [self._approval(row) for row in rows]

    def _approval(self, row: tuple[Any, ...]) -> Approval:
        key, tool, arguments_text, digest, reason, status, requested, decided, by, note = row
        what = f"the approval request {key!r}"
        try:
            arguments = json.loads(arguments_text)
        except (TypeError, ValueError) as err:
            raise self._corrupt(what, err) from err
        if status not in ("pending", "approved", "refused"):
            raise self._corrupt(what, f"status {status!r}")
        # What the operator is shown must be what the approval authorises.
        if call_digest(str(tool), arguments) != digest:
            raise self._corrupt(what, "its arguments do not match its digest")
        return Approval(
            key, str(tool), arguments, reason, status, requested, decided, by, note, str(digest)
        )

    def decide(
        self, key: str, *, approve: bool, by: str, note: str | None = None,
        digest: str | None = None,
    ) -> Approval:  # fmt: skip
        """Approve or refuse a pending request; the decision and its audit line are
        committed together.

        Args:
            digest: if given (at least 8 hex digits, a prefix of the request's digest),
                decide only if the request is still for the call with that digest.

        Raises:
            JournalError: no such request, it was decided already, or its digest is not
                ``digest`` (nothing is written then).
        """
        with self._lock:
            found = self.approval(key)
            if found is None:
                keys = ", ".join(a.key for a in self.approvals("pending")) or "none"
                raise JournalError(f"no approval request {key!r} in {self.path}; pending: {keys}")
            if digest is not None:
                wanted = digest.strip().lower()
                if len(wanted) < _MIN_DIGEST_PREFIX or not re.fullmatch(r"[0-9a-f]+", wanted):
                    raise JournalError(
                        f"digest {digest!r}: give at least {_MIN_DIGEST_PREFIX} hex digits"
                    )
                if not found.digest.startswith(wanted):
                    raise JournalError(
                        f"request {key!r} is for {found.tool} {canonical_json(found.arguments)}"
                        f" (digest {found.digest}), not digest {digest}; nothing decided"
                    )
            if found.status != "pending":
                raise JournalError(f"request {key!r} was already {found.status}")
            status = "approved" if approve else "refused"
            self._log.sync()  # power_loss: no commit may reach the disk before its steps
            self._db.execute("begin")
            try:
                self._db.execute(
                    "update approvals set status = ?, decided = ?, decided_by = ?, note = ? "
                    "where key = ? and status = 'pending'",
                    (status, time.time(), by, note, key),
                )
                self._insert_audit(
                    None, status, found.tool, note, {"key": key, "by": by, "digest": found.digest}
                )
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
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
            self._log.sync()
            self._insert_audit(n, kind, subject, reason, detail)

    def audit_trail(self, kinds: tuple[str, ...] = ()) -> list[AuditEntry]:
        query, args = "select * from audit", ()
        if kinds:
            query += f" where kind in ({', '.join('?' * len(kinds))})"
            args = kinds  # type: ignore[assignment]
        with self._lock:
            rows = self._db.execute(query + " order by seq", args).fetchall()
        return [
            AuditEntry(int(r[0]), float(r[1]), r[2], str(r[3]), r[4], r[5], json.loads(r[6]))
            for r in rows
        ]
