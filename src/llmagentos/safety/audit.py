"""The audit trail of runs without a journal: kept in memory, optionally as JSON lines.

A durable run writes its trail into the journal instead (same fields), where it
survives restarts; see :meth:`llmagentos.durable.Journal.audit_trail`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from llmagentos._json import jsonable

__all__ = ["AuditSink", "MemoryAudit"]


class AuditSink(Protocol):
    """Where audit lines go: :class:`MemoryAudit` or a durable run's journal."""

    def audit(
        self, kind: str, subject: str, *, n: int | None = None, reason: str | None = None,
        detail: Any = None,
    ) -> None: ...  # fmt: skip


class MemoryAudit:
    """Audit lines in a list (``entries``), also appended to ``path`` as JSON lines if given."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.entries: list[dict[str, Any]] = []
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()

    def audit(
        self, kind: str, subject: str, *, n: int | None = None, reason: str | None = None,
        detail: Any = None,
    ) -> None:  # fmt: skip
        entry = {
            "at": time.time(), "n": n, "kind": kind, "subject": subject,
            "reason": reason, "detail": jsonable(detail),
        }  # fmt: skip
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def kinds(self) -> list[str]:
        return [entry["kind"] for entry in self.entries]
