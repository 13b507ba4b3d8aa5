"""``llmagentos run CONFIG --seeds N [--ray ADDRESS]``: a run's seeds side by side.

Every seed is a whole run (train, evaluate, files under ``<out>/seed-<n>``), here one
after another or on Ray one task each; the table shows each seed and the mean with a
95% interval, and ``population.json`` in the output folder holds the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmagentos.cli._common import EXIT_ERROR, fail, stdout
from llmagentos.config import RunConfig
from llmagentos.distributed.population import (
    MemberResult,
    run_population,
    spread,
    summary_rows,
)
from llmagentos.exceptions import LLMAgentOSError

__all__ = ["run_population_in_cli"]


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _interval(values: Sequence[float | None], digits: int = 2) -> str:
    found = spread([v for v in values if v is not None])
    return "-" if found is None else f"{found[0]:.{digits}f} ± {found[1]:.{digits}f}"


def run_population_in_cli(
    configs: Sequence[RunConfig], *, folder: Path, backend: str, address: str | None, quiet: bool
) -> None:
    """Run the members with a progress bar; print and write the side-by-side table."""
    console = stdout()
    where = "Ray" if backend == "ray" else "this process"
    progress = Progress(
        TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(),
        TextColumn(f"on {where}"), TimeElapsedColumn(), console=console, disable=quiet,
    )  # fmt: skip
    with progress:
        task = progress.add_task("runs", total=len(configs))

        def on_member(index: int, member: MemberResult) -> None:
            progress.advance(task)

        try:
            members = run_population(configs, backend=backend, address=address, on_member=on_member)
        except LLMAgentOSError as err:
            fail(err, EXIT_ERROR)
    rows = summary_rows(members)
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        "backend": backend,
        "members": [
            row | {"output_dir": str(m.result.output_dir)}
            for row, m in zip(rows, members, strict=True)
        ],
    }
    (folder / "population.json").write_text(json.dumps(report, indent=2) + "\n")
    if quiet:
        return
    first = configs[0]
    table = Table(
        title=f"{first.name}: {len(members)} seeds on {first.env.id} ({where})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    # train: the mean return of the last 100 training episodes; eval: of every evaluation one.
    for column in ("seed", "train", "eval", "success", "seconds", "node"):
        table.add_column(column, justify="left" if column == "node" else "right", no_wrap=True)
    for row in rows:
        success = row["eval_success"]
        table.add_row(
            str(row["seed"]), _number(row["train_recent_mean"], 1), _number(row["eval_mean"]),
            "-" if success is None else f"{success:.1%}", _number(row["seconds"], 1),
            escape(str(row["node"])),
        )  # fmt: skip
    table.add_section()
    table.add_row(
        "mean",
        _interval([r["train_recent_mean"] for r in rows], 1),
        _interval([r["eval_mean"] for r in rows]),
        _interval([r["eval_success"] for r in rows]),
        "", "",
    )  # fmt: skip
    console.print(table)
    console.print(
        "train: mean return of the last 100 training episodes; eval: of the evaluation "
        "episodes; mean: over the seeds, ± a 95% Student-t interval",
        highlight=False,
    )
    console.print(f"output: {escape(str(folder))} (population.json, seed-*/)", highlight=False)
    if any(m.result.error for m in members):
        raise typer.Exit(EXIT_ERROR)
