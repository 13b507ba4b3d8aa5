"""Bad input to journals and the ``runs`` commands: clear errors, exit 2, nothing changed.

Files that are not journals (text, another program's SQLite database, an empty file,
a journal of the older position-bound format) are refused without a byte written;
rows edited by hand (arguments that no longer match their digest, a result that is
not JSON, a run id fit to smuggle a header) are refused before a run writes anything;
what an operator approves is shown whole, with terminal tricks escaped.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from llmagentos.cli.main import main
from llmagentos.durable import Journal, call_digest, run_durable
from llmagentos.exceptions import JournalError
from tests.durable.test_bound_calls import REFUND, agent, run


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def _paused(tmp: Path, arguments: object = REFUND) -> tuple[Path, str]:
    journal = tmp / "run.db"
    first = run(journal, [], "shop.refund", arguments)
    assert first.state == "paused"
    return journal, first.pending[0].key


def _foreign_db(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("create table entries (key text primary key, entry text)")
    db.execute("insert into entries values ('k', 'v')")
    db.commit()
    db.close()


def _old_journal(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("create table meta (key text primary key, value text not null)")
    db.execute("insert into meta values ('format', 'llmagentos.journal/1')")
    db.execute("create table approvals (key text primary key, tool text not null)")
    db.execute("insert into approvals values ('0.tool.0', 'shop.refund')")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("not sqlite at all, just text " * 100), "cannot open journal"),
        (_foreign_db, "not an llmagentos journal"),
        (_old_journal, "llmagentos.journal/1 journal, written by an older llmagentos"),
        (lambda p: p.write_bytes(b""), "empty file, not a journal"),
    ],
    ids=["text", "foreign-sqlite", "old-format", "empty"],
)
def test_a_file_that_is_not_a_journal_of_this_format_is_refused_unchanged(
    tmp_path, capsys, make, message
):
    path = tmp_path / "run.db"
    make(path)
    before = _sha(path)
    for command in (["runs", "show"], ["runs", "approve"], ["runs", "resume"], ["runs", "audit"]):
        assert main([*command, str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    with pytest.raises(JournalError, match=message):
        Journal(path, create=False)
    if message != "empty file, not a journal":  # an empty file is where a new run may start
        with pytest.raises(JournalError, match=message):
            run_durable(agent([], "shop.refund", REFUND), path, 1, seed=0, max_steps=3)
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.db"]  # no -wal, no -shm
    assert main(["runs", "list", str(tmp_path)]) == 0
    assert "unreadable" in capsys.readouterr().out


def test_a_tampered_call_row_stops_the_run_before_anything_is_written(tmp_path, capsys):
    journal = tmp_path / "run.db"
    ran: list[str] = []
    assert run(journal, ran, "shop.refund", REFUND, approver=lambda r: True).completed
    db = sqlite3.connect(journal)
    (key,) = db.execute("select key from effects").fetchone()
    # Rewrite what the recorded call was, keeping its digest: the row no longer matches.
    db.execute("update effects set request = ? where key = ?", ('{"amount":1,"order":"o1"}', key))
    db.commit()
    db.close()
    before = _dump(journal)
    with pytest.raises(JournalError, match="does not match its digest"):
        run(journal, ran, "shop.refund", REFUND, approver=lambda r: True)
    assert _dump(journal) == before and ran == ["refund o1 5"]
    with Journal(journal, create=False) as opened:
        assert opened.status().state == "completed"  # not even the status was touched

    db = sqlite3.connect(journal)
    db.execute("update effects set request = ?, result = ? where key = ?",
               ('{"amount":5,"order":"o1"}', "{not json", key))  # fmt: skip
    db.commit()
    db.close()
    before = _dump(journal)
    with pytest.raises(JournalError, match=r"recorded call .* is corrupt"):
        run(journal, ran, "shop.refund", REFUND, approver=lambda r: True)
    assert _dump(journal) == before

    db = sqlite3.connect(journal)  # JSON, but not a tool result: caught when replayed
    db.execute("update effects set result = ? where key = ?", ('{"ok": "maybe"}', key))
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=r"recorded result .* is corrupt"):
        run(journal, ran, "shop.refund", REFUND, approver=lambda r: True)
    assert ran == ["refund o1 5"]


def test_an_approval_whose_arguments_were_edited_is_not_shown_nor_decided(tmp_path, capsys):
    journal, key = _paused(tmp_path)
    # Make the request look harmless to the operator while its digest is the real call's.
    db = sqlite3.connect(journal)
    db.execute(
        "update approvals set arguments = ? where key = ?", ('{"amount":0,"order":"o1"}', key)
    )
    db.commit()
    db.close()
    before = _dump(journal)
    assert main(["runs", "show", str(tmp_path)]) == 2
    assert "approval request" in capsys.readouterr().err
    assert main(["runs", "approve", str(tmp_path), key]) == 2
    assert "arguments do not match its digest" in capsys.readouterr().err
    assert _dump(journal) == before


def test_a_run_id_fit_to_smuggle_a_header_is_refused(tmp_path):
    journal, _ = _paused(tmp_path)
    db = sqlite3.connect(journal)
    db.execute("update meta set value = ? where key = 'run_id'", ('"abcdefgh\\r\\nX-Evil: 1"',))
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=r"run id .* is corrupt"):
        Journal(journal, create=False)


def test_the_operator_sees_the_whole_call_and_can_pin_its_digest(tmp_path, capsys):
    # Long arguments with terminal tricks: an escape sequence, a bidi override, a newline.
    note = "x" * 120 + "\x1b[2K\r\u202eALL\n"
    journal, key = _paused(tmp_path, {"order": note, "amount": 5})
    digest = call_digest("shop.refund", {"order": note, "amount": 5.0})
    assert main(["runs", "show", str(tmp_path)]) == 0
    out = "".join(capsys.readouterr().out.split())  # the table folds long cells
    assert digest in out and "x" * 120 in out and "shop.refund" in out
    assert "\\u001b[2K\\r\\u202eALL\\n" in out and "\x1b" not in out and "\u202e" not in out

    # A digest that is not the request's: nothing is decided.
    assert main(["runs", "approve", str(tmp_path), key, "--digest", "0" * 12]) == 2
    assert "nothing decided" in capsys.readouterr().err
    assert main(["runs", "approve", str(tmp_path), key, "--digest", "abc"]) == 2
    assert "at least 8 hex digits" in capsys.readouterr().err
    with Journal(journal) as db:
        pending = db.approval(key)
        assert pending is not None and pending.status == "pending"
    assert main(["runs", "approve", str(tmp_path), key, "--digest", digest[:12]]) == 0
    out = capsys.readouterr().out
    assert "approved shop.refund" in out and digest in out and key in out
    with Journal(journal) as db:
        decided = db.approval(key)
        lines = [e for e in db.audit_trail(("approved",)) if e.detail["key"] == key]
    assert decided is not None and decided.status == "approved" and decided.digest == digest
    assert len(lines) == 1 and lines[0].detail["digest"] == digest
    assert main(["runs", "approve", str(tmp_path), "no/such/0.tool.0"]) == 2
    assert "no approval request 'no/such/0.tool.0'" in capsys.readouterr().err


def test_a_config_run_into_a_folder_holding_no_journal_of_ours_exits_2_unchanged(tmp_path, capsys):
    config = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"
    out = tmp_path / "out"
    out.mkdir()
    _foreign_db(out / "run.db")
    before = _sha(out / "run.db")
    assert main(["run", str(config), "-o", str(out), "--durable", "--train-episodes", "1",
                 "--eval-episodes", "0", "-q"]) == 2  # fmt: skip
    assert "not an llmagentos journal" in capsys.readouterr().err
    assert _sha(out / "run.db") == before
    assert sorted(p.name for p in out.iterdir()) == ["run.db"]  # no results, no trace
