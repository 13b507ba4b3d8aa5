"""``llmagentos run CONFIG``: train and evaluate an agent from a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from llmagentos.cli._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_STOPPED, fail, stdout
from llmagentos.config import load_config
from llmagentos.durable.steplog import check_durability
from llmagentos.exceptions import JournalError, LLMAgentOSError
from llmagentos.experiment import (
    FILE_NAMES,
    Experiment,
    ExperimentResult,
    PhaseResult,
    RunCallbacks,
    with_overrides,
)
from llmagentos.types import EpisodeResult

__all__ = ["RichProgress", "run_command", "run_experiment_in_cli"]

# Training returns are noisy and drift as the agent learns: show the recent mean.
_TRAIN_WINDOW = 100


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class RichProgress(RunCallbacks):
    """Draws one progress bar per phase: episodes done and the current mean return."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def phase_started(self, phase: PhaseResult) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description:<5}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("episodes  mean return {task.fields[mean]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task(phase.phase, total=phase.planned, mean="-")

    def episode_finished(self, phase: PhaseResult, episode: EpisodeResult) -> None:
        if self.progress is None or self.task is None:
            return
        mean = phase.recent_mean(_TRAIN_WINDOW) if phase.phase == "train" else phase.mean_return
        self.progress.update(self.task, completed=len(phase.episodes), mean=_number(mean))

    def phase_finished(self, phase: PhaseResult) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.progress = self.task = None


def _summary(console: Console, result: ExperimentResult, algorithm: str) -> None:
    config = result.config
    table = Table(
        title=f"{config.name}: {algorithm} on {config.env.id} (return per episode)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("phase", no_wrap=True, min_width=5)
    for column in ("episodes", "mean", "min", "max", "success", "steps", "steps/s"):
        table.add_column(column, justify="right", no_wrap=True)
    for phase in result.phases:
        table.add_row(
            phase.phase,
            f"{len(phase.episodes)}/{phase.planned}",
            _number(phase.mean_return, 3),
            _number(phase.min_return),
            _number(phase.max_return),
            "-" if phase.success_rate is None else f"{phase.success_rate:.1%}",
            str(phase.steps),
            _number(phase.steps_per_second, 0),
        )
    console.print(table)
    files = Table(
        title=f"output: {escape(str(result.output_dir))}", title_justify="left", box=box.SIMPLE_HEAD
    )
    files.add_column("file")
    files.add_column("contents")
    descriptions = {
        "results": "config, per-episode returns, summary",
        "trace": "step records of the traced episodes",
        "qtable": "learned Q-values and counters (--resume it)",
        "plot": "learning curve",
        "journal": "durable journal: steps, tool calls, approvals, audit",
        "spans": "OpenTelemetry spans (llmagentos explain, llmagentos dashboard)",
    }
    order = list(FILE_NAMES)
    for kind in sorted(result.files, key=lambda k: order.index(k) if k in order else len(order)):
        files.add_row(escape(result.files[kind].name), descriptions.get(kind, ""))
    console.print(files)
    console.print(f"{result.total_steps} steps in {result.wall_seconds:.1f} s", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", markup=True, highlight=False)
    if result.stopped:
        console.print(f"[yellow]stopped:[/] {escape(result.stopped)}", markup=True, highlight=False)
        if result.stopped.startswith("paused"):
            where = escape(str(result.output_dir))
            console.print(
                f"decide with 'llmagentos runs approve {where}' (or refuse), "
                f"then 'llmagentos runs resume {where}'",
                highlight=False,
            )
    if result.interrupted:
        done = ", ".join(f"{len(p.episodes)} {p.phase}" for p in result.phases) or "no"
        console.print(
            f"[yellow]interrupted:[/] kept {done} episodes that finished",
            markup=True,
            highlight=False,
        )


def run_command(
    config: Annotated[
        Path,
        typer.Argument(
            metavar="CONFIG",
            help="The run config: a .toml, .yaml or .yml file.",
            show_default=False,
        ),
    ],
    *,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Output folder (default: runs/NAME from the config)."
        ),
    ] = None,
    train_episodes: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="Training episodes (overrides train.episodes)."),
    ] = None,
    eval_episodes: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="Evaluation episodes (overrides eval.episodes)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0, metavar="N", help="Seed training with N and evaluation with N + 10000."
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(metavar="QTABLE.json", help="Continue from a saved qtable.json."),
    ] = None,
    durable: Annotated[
        bool,
        typer.Option(
            "--durable", help="Journal every step to run.db; resume with 'llmagentos runs resume'."
        ),
    ] = False,
    durability: Annotated[
        str | None,
        typer.Option(
            metavar="MODE",
            help="What the journal survives (implies --durable): 'process' (a kill, SIGKILL "
            "included) or 'power_loss' (syncs to disk; slower). Overrides output.durability.",
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Run N seeds (the config's, then the next ones) side by side, each into "
            "OUT/seed-S, with a table of all of them.",
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Run on Ray (llmagentos[ray]), each seed a task: 'local' starts a local "
            "instance on 127.0.0.1, HOST:PORT joins a running cluster's head.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")
    ] = False,
) -> None:
    """Train and evaluate an agent from CONFIG; write results, trace, Q-table and plot.

    Ctrl-C stops early and keeps the finished episodes (exit code 130).
    """
    try:
        run_config = with_overrides(
            load_config(config),
            output_dir=out,
            train_episodes=train_episodes,
            eval_episodes=eval_episodes,
            seed=seed,
            resume=resume,
        )
        if durable or durability is not None:
            if seeds is not None or ray is not None:
                fail("--durable: a run with --seeds or --ray is not journaled")
            update: dict[str, object] = {"durable": True}
            if durability is not None:
                update["durability"] = check_durability(durability, "--durability")
            output = run_config.output.model_copy(update=update)
            run_config = run_config.model_copy(update={"output": output})
        if seeds is not None or ray is not None:
            from llmagentos.cli.run_population import run_population_in_cli
            from llmagentos.distributed.population import seed_population

            members = seed_population(run_config, seeds or 1)
            folder = run_config.output_dir()
            for member in members:
                Experiment(member)  # every member validated before any runs
        else:
            experiment = Experiment(run_config)
    except LLMAgentOSError as err:
        fail(err)
    if seeds is not None or ray is not None:
        backend = "local" if ray is None else "ray"
        address = None if ray in (None, "local") else ray
        run_population_in_cli(members, folder=folder, backend=backend, address=address, quiet=quiet)
        return
    run_experiment_in_cli(experiment, quiet=quiet)


def run_experiment_in_cli(experiment: Experiment, *, quiet: bool) -> None:
    """Run with progress bars and the summary; exit 1 on failure, 3 when stopped, 130 on ^C,
    2 when the journal does not fit (not a journal, another run's, a corrupt row, a
    replay that differs from it)."""
    console = stdout()
    callbacks = None if quiet else RichProgress(console)
    try:
        result = experiment.run(callbacks)
    except JournalError as err:
        fail(err)
    except LLMAgentOSError as err:
        fail(f"{err} (the finished episodes are in {experiment.output_dir})", EXIT_ERROR)
    if not quiet:
        _summary(console, result, experiment.algorithm)
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.stopped:
        raise typer.Exit(EXIT_STOPPED)
