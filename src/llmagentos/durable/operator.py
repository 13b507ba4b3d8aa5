"""What an operator does to a durable run: see its requests, decide them, resume it.

``llmagentos runs approve/refuse/resume`` and the dashboard's buttons both go through
these functions, so a decision made in either place is the same journal transaction
with the same audit line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llmagentos.durable.digest import canonical_json
from llmagentos.durable.journal import Approval, Journal
from llmagentos.exceptions import JournalError

__all__ = ["JOURNAL_FILE", "call_text", "decide", "journal_path", "resume_in_background", "visible"]

JOURNAL_FILE = "run.db"
RESUME_LOG = "resume.log"


def visible(text: str) -> str:
    """``text`` with every character a terminal or page would not show as itself escaped
    (control characters, bidirectional overrides, zero-width marks)."""
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


def call_text(tool: str, arguments: object) -> str:
    """A call as the operator sees it: the tool and its arguments, whole."""
    return visible(f"{tool} {canonical_json(arguments)}")


def journal_path(run: Path) -> Path:
    """The journal of the run in folder ``run`` (or ``run`` itself, a journal file).

    Raises:
        JournalError: there is none.
    """
    path = run / JOURNAL_FILE if run.is_dir() else run
    if not path.is_file():
        raise JournalError(f"{run}: no durable run here (no {JOURNAL_FILE}; run with --durable)")
    return path


def decide(
    run: Path,
    key: str | None,
    *,
    approve: bool,
    by: str,
    note: str | None = None,
    digest: str | None = None,
) -> Approval:
    """Approve or refuse a request of the run (``key`` ``None``: the only pending one).

    The decision and its audit line are one transaction; with ``digest``, only if the
    request is still for the call the operator saw.

    Raises:
        JournalError: no journal, no such request (or several pending and no key), a
            request already decided, or a digest that does not match.
    """
    with Journal(journal_path(run), create=False) as journal:
        if key is None:
            pending = journal.approvals("pending")
            if len(pending) != 1:
                keys = ", ".join(a.key for a in pending) or "none"
                raise JournalError(f"{run}: name the request to decide (pending: {keys})")
            key = pending[0].key
        return journal.decide(key, approve=approve, by=by, note=note, digest=digest)


def resume_in_background(run: Path) -> subprocess.Popen[bytes]:
    """Start ``llmagentos runs resume RUN --quiet`` as its own process; its output goes
    to ``resume.log`` in the run's folder.

    Raises:
        JournalError: the run has no journal, or still waits for a decision.
    """
    path = journal_path(run)
    with Journal(path, create=False) as journal:
        pending = journal.approvals("pending")
    if pending:
        keys = ", ".join(a.key for a in pending)
        raise JournalError(f"{run} still waits for a decision on {keys}")
    folder = path.parent
    with (folder / RESUME_LOG).open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "llmagentos", "runs", "resume", str(folder), "--quiet"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # the run outlives a dashboard that stops
            env=os.environ.copy(),
        )
