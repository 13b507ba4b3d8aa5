"""The steps of a journal: the SQLite rows of a journal/2, then the steps log."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmagentos.durable.records import pack_data, pack_record, unpack
from llmagentos.durable.steplog import LOG_FORMAT, Frames, StepLog
from llmagentos.exceptions import JournalError

if TYPE_CHECKING:
    from llmagentos.types import StepRecord

__all__ = ["JOURNAL_FORMAT", "JournalSteps"]

JOURNAL_FORMAT = "llmagentos.journal/3"  # steps in the steps log


class JournalSteps:
    """What :class:`~llmagentos.durable.journal.Journal` does with steps."""

    path: Path
    run_id: str
    _db: sqlite3.Connection
    _lock: threading.RLock
    _log: StepLog
    _rows: int

    if TYPE_CHECKING:  # the journal's own, used here

        def _meta(self, key: str) -> str | None: ...

        def set_meta(self, key: str, value: Any) -> None: ...

        def audit(
            self, kind: str, subject: str, *, n: int | None = None, reason: str | None = None,
            detail: Any = None,
        ) -> None: ...  # fmt: skip

        def _corrupt(self, what: str, err: object) -> JournalError: ...

    def _frames(self) -> Frames | None:
        """The steps log as it is now (``None``: no step logged yet)."""
        frames = self._log.frames(run_id=self.run_id, base=self._rows)
        if frames is None and not self._log.writing and self._meta("steps_log") is not None:
            raise JournalError(f"{self.path}: its steps log {self._log.path} is missing")
        return frames

    def step_count(self) -> int:
        """Steps recorded (a step a writer is logging at this moment is not yet one)."""
        with self._lock:
            frames = self._frames()
        return self._rows + (0 if frames is None else len(frames.bodies))

    def append_record(self, n: int, segment: str, record: StepRecord) -> None:
        """Log step ``n`` (global index) of ``segment``: its record is in the kernel's
        page cache (outlives this process) before this returns.

        Raises:
            JournalError: ``n`` is not the next step, or the log cannot be written.
            TypeError: a value of the record has no JSON form.
        """
        self.append_body(n, pack_record(n, segment, record))

    def step_appender(self) -> Callable[[int, bytes], None]:
        """``append(n, body)`` for the run's steps: the log's own, without this journal's
        lock per step (the runner is the log's one writer) in ``process`` mode."""
        with self._lock:
            if not self._log.writing:
                self._open_log()
            if not self._log.power_loss:
                return self._log.append
        return self.append_body  # its syncs share state with the journal's commits

    def append_body(self, n: int, body: bytes) -> None:
        """Log step ``n`` packed already (:mod:`llmagentos.durable.records`)."""
        with self._lock:
            if not self._log.writing:
                self._open_log()
            self._log.append(n, body)

    def append_step(self, n: int, segment: str, episode: int, step: int, record: Any) -> None:
        """Log step ``n`` with ``record`` as any JSON-able data (a dict, to be read back)."""
        del episode, step  # in the record; kept in the signature for journal/2's callers
        self.append_body(n, pack_data(n, segment, record))

    def _open_log(self) -> None:
        """Become the steps log's writer (the run's process): cut off a torn tail left
        by a kill, or create the log; mark the journal as one with a log."""
        torn = self._log.open(run_id=self.run_id, base=self._rows)
        if self._meta("steps_log") is None or self._meta("format") != JOURNAL_FORMAT:
            self._db.execute("begin")
            try:
                self.set_meta("steps_log", LOG_FORMAT)
                self._db.execute("update meta set value = ? where key = 'format'",
                                 (JOURNAL_FORMAT,))  # fmt: skip
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
        if torn:
            self.audit("steps_log_repaired", str(self._log.path),
                       n=self._log.next, detail={"dropped_bytes": torn})  # fmt: skip

    def steps(self, start: int = 0) -> Iterator[dict[str, Any]]:
        """The recorded steps from global index ``start`` on, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "select n, record from steps where n >= ? order by n", (start,)
            ).fetchall()
            frames = self._frames()
        for n, text in rows:
            yield self._record(n, text)
        if frames is not None:
            for index in range(max(0, start - frames.base), len(frames.bodies)):
                yield self._logged(frames, index)

    def step(self, n: int) -> dict[str, Any] | None:
        if n < self._rows:
            with self._lock:
                row = self._db.execute("select record from steps where n = ?", (n,)).fetchone()
            return None if row is None else self._record(n, row[0])
        with self._lock:
            frames = self._frames()
        if frames is None or not 0 <= n - frames.base < len(frames.bodies):
            return None
        return self._logged(frames, n - frames.base)

    def _record(self, n: int, text: str) -> dict[str, Any]:
        try:
            record = json.loads(text)
        except ValueError as err:
            raise self._corrupt(f"step {n}", err) from err
        if not isinstance(record, dict):
            raise self._corrupt(f"step {n}", "not a record")
        return record

    def _logged(self, frames: Frames, index: int) -> dict[str, Any]:
        n = frames.base + index
        what = f"step {n} in {self._log.path}"
        try:
            found, _segment, record = unpack(frames.bodies[index])
        except ValueError as err:
            raise self._corrupt(what, err) from err
        if found != n:
            raise self._corrupt(what, f"the frame holds step {found}")
        if not isinstance(record, dict):
            raise self._corrupt(what, "not a record")
        return record
