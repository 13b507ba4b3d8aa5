"""``llmagentos recommend eval``: the recommenders on MovieLens, side by side."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmagentos.cli._common import EXIT_ERROR, EXIT_INTERRUPTED, fail, show_help_without_command
from llmagentos.cli._common import stdout as make_console
from llmagentos.exceptions import LLMAgentOSError

if TYPE_CHECKING:
    from llmagentos.recommend.evaluate import Interval, RecommendReport

__all__ = ["QUICK_USERS", "recommend_app"]

QUICK_USERS = 300
"""``--quick``: this many users (drawn with seed 0) instead of all 671..."""
QUICK_KNN_GRID = (50, 200)
QUICK_EASE_GRID = (200.0, 1000.0)
"""...and two values of each hyperparameter tried on validation instead of 5 and 6."""

recommend_app = typer.Typer(
    help="The recommendation agent on MovieLens (needs the 'recommend' extra).",
    add_completion=False,
)


@recommend_app.callback(invoke_without_command=True)
def _group(context: typer.Context) -> None:
    show_help_without_command(context)


def _cell(value: Interval, digits: int = 3) -> str:
    """``mean ±h``, h the half-width of the 95% interval (results.json has both ends)."""
    if value.low == value.high:
        return f"{value.mean:.{digits}f}"
    return f"{value.mean:.{digits}f} ±{value.half_width:.{digits}f}"


def _summary(console: Console, report: RecommendReport) -> None:
    from llmagentos.recommend.metrics import METRICS

    split = report.split
    title = (
        f"MovieLens, time-ordered split: {split['eval_users']} test users, "
        f"{split['items']} items; ± half of a 95% bootstrap interval over users"
    )
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("model")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    table.add_column(f"hits in {report.settings.slates} slates", justify="right")
    for model in report.models:
        row = [_cell(model.users_ci[m]) for m in METRICS]
        table.add_row(escape(model.name), *row, _cell(model.users_ci["hits"], 2))
    console.print(table)
    seeds = Table(
        title=f"over {report.settings.seeds} seeds (± half of a 95% t interval; "
        "differences paired by seed)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    seeds.add_column("")
    for metric in (*METRICS, "hits"):
        seeds.add_column(metric, justify="right")
    for model in report.models:
        if model.kind == "online":
            seeds.add_row(escape(model.name), *(_cell(model.metrics[m]) for m in model.metrics))
    for name, diffs in report.paired.items():
        seeds.add_row(escape(name), *(_cell(diffs[m]) for m in diffs))
    console.print(seeds)
    chosen = ", ".join(f"{t.name} {t.parameter}={t.best:g}" for t in report.tuned)
    console.print(f"chosen on validation (NDCG@10): {chosen}; {report.seconds:.0f} s")


def _eval_command(
    *,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Where results.json goes.")
    ] = Path("runs/recommend"),
    seeds: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100,
            metavar="N",
            help="Seeds of the online agent [default: 5; 2 with --quick].",
        ),
    ] = None,
    slates: Annotated[
        int, typer.Option(min=1, max=50, metavar="T", help="Slates of 10 per session.")
    ] = 5,
    quick: Annotated[
        bool,
        typer.Option("--quick", help=f"{QUICK_USERS} users of 671 (unless --users) and 2 seeds."),
    ] = False,
    users: Annotated[
        int | None,
        typer.Option(min=10, max=671, metavar="N", help="Keep N users (drawn with seed 0)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
    ] = False,
) -> None:
    """Tune, fit and replay TopPop, ItemKNN, EASE and the online agent; write DIR/results.json.

    HR@10, NDCG@10 and Recall@10 of each session's first slate (full ranking, rated
    items excluded), hits over the session's slates, intervals over users and seeds.
    """
    try:
        from llmagentos.recommend.evaluate import EvalSettings, evaluate, job_count, write_results
    except ImportError as err:  # scipy or pandas missing: the extra is not installed
        fail(f"{err}; pip install 'llmagentos[recommend]'", EXIT_ERROR)
    if out.exists() and not out.is_dir():
        fail(f"--out: {out} is a file, not a folder")
    if quick and users is None:
        users = QUICK_USERS
    if seeds is None:
        seeds = 2 if quick else 5
    try:
        settings = EvalSettings(seeds=seeds, slates=slates, users=users)
        if quick:
            settings = replace(settings, knn_grid=QUICK_KNN_GRID, ease_grid=QUICK_EASE_GRID)
    except LLMAgentOSError as err:
        fail(err)
    console = make_console()
    progress = Progress(
        TextColumn("[bold]recommend"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    bar = progress.add_task("recommend", total=job_count(settings), current="loading MovieLens")

    def advance(what: str) -> None:
        progress.update(bar, advance=1, current=what)

    try:
        with progress:
            report = evaluate(settings, progress=advance)
    except KeyboardInterrupt:
        typer.echo("interrupted: no results written", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except LLMAgentOSError as err:
        fail(err, EXIT_ERROR)
    written = write_results(report, out)
    if not quiet:
        _summary(console, report)
        for path in written:
            console.print(f"wrote {escape(str(path))}", highlight=False)


recommend_app.command("eval")(_eval_command)
