"""``llmagentos runs``: list durable runs, decide their approval requests, resume them.

What an operator approves is shown whole: the tool, its validated arguments in full
(canonical JSON, with any character a terminal could hide or act on escaped) and the
digest the decision is bound to; ``runs approve --digest`` decides only if the request
is still for that call. A file that is not a journal, or a journal with a row that
does not match its digest, is refused (exit 2) and left as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from llmagentos.cli._common import fail, show_help_without_command, stdout
from llmagentos.cli.run import run_experiment_in_cli
from llmagentos.config import parse_config
from llmagentos.durable.journal import Approval, Journal
from llmagentos.durable.operator import call_text, decide, visible
from llmagentos.durable.steplog import check_durability
from llmagentos.exceptions import LLMAgentOSError
from llmagentos.experiment import FILE_NAMES, Experiment

__all__ = ["runs_app"]

runs_app = typer.Typer(
    help="Durable runs: list them, approve or refuse paused actions, resume, audit.",
    no_args_is_help=False,
)

RunArgument = Annotated[
    Path,
    typer.Argument(
        metavar="RUN", help="The run's output folder (holding run.db) or the journal file."
    ),
]


@runs_app.callback(invoke_without_command=True)
def _group(context: typer.Context) -> None:
    show_help_without_command(context)


def _journal_path(run: Path) -> Path:
    path = run / FILE_NAMES["journal"] if run.is_dir() else run
    if not path.is_file():
        fail(f"{run}: no durable run here (no {FILE_NAMES['journal']}; run with --durable)")
    return path


@contextmanager
def _open(run: Path) -> Iterator[Journal]:
    """The run's journal; any journal error (not a journal, a corrupt row) exits 2."""
    try:
        journal = Journal(_journal_path(run), create=False)
    except LLMAgentOSError as err:
        fail(err)
    try:
        yield journal
    except LLMAgentOSError as err:
        fail(err)
    finally:
        journal.close()


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@runs_app.command("list")
def list_runs(
    root: Annotated[
        Path, typer.Argument(metavar="ROOT", help="Where to look for runs (searched 3 deep).")
    ] = Path("runs"),
) -> None:
    """List the durable runs under ROOT: state, steps, pending approvals."""
    if not root.is_dir():
        fail(f"{root}: no such folder")
    table = Table(box=box.SIMPLE_HEAD, title=f"durable runs under {escape(str(root))}")
    for column in ("run", "state", "steps", "pending", "updated", "detail"):
        table.add_column(column, overflow="fold")
    name = FILE_NAMES["journal"]
    found = sorted({*root.glob(name), *root.glob(f"*/{name}"), *root.glob(f"*/*/{name}")})
    for path in found:
        try:
            with Journal(path, create=False) as journal:
                status = journal.status()
                pending = len(journal.approvals("pending"))
                steps = journal.step_count()
        except LLMAgentOSError as err:
            table.add_row(escape(str(path.parent)), "unreadable", "-", "-", "-", escape(str(err)))
            continue
        table.add_row(
            escape(str(path.parent)), status.state, str(steps), str(pending),
            _when(status.updated), escape(status.detail or ""),
        )  # fmt: skip
    console = stdout()
    if not found:
        console.print(f"no durable runs under {escape(str(root))}")
        return
    console.print(table)


@runs_app.command("show")
def show_run(run: RunArgument) -> None:
    """Show a run's state, counts and approval requests (each call in full, with its digest)."""
    with _open(run) as journal:
        status = journal.status()
        console = stdout()
        console.print(f"[bold]{escape(str(run))}[/]: {status.state}", highlight=False)
        console.print(f"  run id {journal.run_id}", highlight=False)
        if status.detail:
            console.print(f"  {escape(visible(status.detail))}", highlight=False)
        console.print(
            f"  {journal.step_count()} steps, {len(journal.episodes())} episodes, "
            f"{len(journal.effect_keys())} completed tool/model calls, "
            f"{status.active_seconds:.1f} s running",
            highlight=False,
        )
        _approvals_table(journal)


def _approvals_table(journal: Journal) -> None:
    """Each request as a block: the whole call, never cut to fit a column."""
    approvals = journal.approvals()
    if not approvals:
        return
    console = stdout()
    console.print("approval requests:", highlight=False)
    for item in approvals:
        lines = [
            f"  {escape(item.key)}  {item.status}",
            f"    call    {escape(call_text(item.tool, item.arguments))}",
            f"    digest  {item.digest}",
        ]
        if item.reason:
            lines.append(f"    reason  {escape(visible(item.reason))}")
        if item.status != "pending":
            note = f": {item.note}" if item.note else ""
            lines.append(f"    {item.status} by {escape(visible((item.decided_by or '') + note))}")
        for line in lines:
            console.print(line, highlight=False, soft_wrap=True)


def _decide(
    run: Path, key: str | None, *, approve: bool, by: str, note: str | None, digest: str | None
) -> None:
    _journal_path(run)
    try:
        decided: Approval = decide(run, key, approve=approve, by=by, note=note, digest=digest)
    except LLMAgentOSError as err:
        fail(err)
    verb = "approved" if approve else "refused"
    console = stdout()
    console.print(f"{verb} {escape(call_text(decided.tool, decided.arguments))}", highlight=False)
    console.print(f"  request {escape(decided.key)}, digest {decided.digest}", highlight=False)
    console.print(f"continue with 'llmagentos runs resume {escape(str(run))}'", highlight=False)


NoteOption = Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")]
ByOption = Annotated[str, typer.Option(help="Who decides (kept in the audit trail).")]
KeyArgument = Annotated[
    str | None, typer.Argument(metavar="KEY", help="The request (default: the only pending one).")
]
DigestOption = Annotated[
    str | None,
    typer.Option(
        metavar="HEX",
        help="Decide only if the request is for the call with this digest "
        "(at least 8 hex digits, as 'runs show' prints it).",
    ),
]


@runs_app.command("approve")
def approve(
    run: RunArgument, key: KeyArgument = None, note: NoteOption = None,
    by: ByOption = "operator", digest: DigestOption = None,
) -> None:  # fmt: skip
    """Approve a paused run's pending action: that call, with those arguments, only."""
    _decide(run, key, approve=True, by=by, note=note, digest=digest)


@runs_app.command("refuse")
def refuse(
    run: RunArgument, key: KeyArgument = None, note: NoteOption = None,
    by: ByOption = "operator", digest: DigestOption = None,
) -> None:  # fmt: skip
    """Refuse a paused run's pending action (the agent sees the refusal and goes on)."""
    _decide(run, key, approve=False, by=by, note=note, digest=digest)


@runs_app.command("resume")
def resume(
    run: RunArgument,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
    durability: Annotated[
        str | None,
        typer.Option(
            metavar="MODE",
            help="'process' or 'power_loss' from now on (default: the run's own setting).",
        ),
    ] = None,
) -> None:
    """Resume a run started by 'llmagentos run --durable' (after a crash, pause or Ctrl-C).

    The run is replayed from its journal: finished steps are recomputed and checked,
    completed tool and model calls are not made again; then it goes on live.
    """
    if durability is not None:
        try:
            check_durability(durability, "--durability")
        except LLMAgentOSError as err:
            fail(err)
    path = _journal_path(run)
    with _open(run) as journal:
        journal.verify()  # a corrupt row stops the resume before anything is written
        data = journal.get_meta("config")
        pending = journal.approvals("pending")
    if data is None:
        fail(
            f"{run} was started from Python, not from a config: "
            "run the same script again to resume it"
        )
    if pending:
        keys = ", ".join(a.key for a in pending)
        fail(f"{run} still waits for a decision on {keys}: 'llmagentos runs approve/refuse' first")
    try:
        data["output"]["dir"] = str(path.parent)
        if durability is not None:
            data["output"]["durability"] = durability
        experiment = Experiment(parse_config(data))
    except (LLMAgentOSError, TypeError, KeyError) as err:
        fail(f"{run}: the journal's config cannot be used: {err}")
    run_experiment_in_cli(experiment, quiet=quiet)


@runs_app.command("audit")
def audit(
    run: RunArgument,
    steps: Annotated[
        bool, typer.Option("--steps/--no-steps", help="Include every step's action and reason.")
    ] = True,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many lines.")] = 200,
) -> None:
    """The audit trail: each action with the planner's reason, tool calls, decisions, stops."""
    with _open(run) as journal:
        lines: list[tuple[float, int, str, str, str, str]] = []
        for entry in journal.audit_trail():
            detail = "" if entry.detail is None else _short(entry.detail, 80)
            n = -1 if entry.n is None else entry.n
            lines.append((entry.at, n, entry.kind, entry.subject or "", entry.reason or "", detail))
        if steps:
            for index, record in enumerate(journal.steps()):
                reward = f"reward {record['reward']:g}"
                lines.append((0.0, index, "action", _short(record["action"]),
                              record.get("reason") or "", reward))  # fmt: skip
    # Steps first within a step index, then the events of that step in time order.
    lines.sort(key=lambda line: (line[1], line[0]))
    table = Table(box=box.SIMPLE_HEAD, title=f"audit trail of {escape(str(run))}")
    for column in ("step", "kind", "subject", "reason", "detail"):
        table.add_column(column, overflow="fold")
    for _at, n, kind, subject, reason, detail in lines[-limit:]:
        table.add_row(
            "-" if n < 0 else str(n),
            kind,
            escape(visible(subject)),
            escape(visible(reason)),
            escape(visible(detail)),
        )
    stdout().print(table)
    if len(lines) > limit:
        stdout().print(f"(last {limit} of {len(lines)} lines; --limit to see more)")
