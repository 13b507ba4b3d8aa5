"""``llmagentos codegen``: score the code-generation agent on the bundled task set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmagentos._files import write_atomic
from llmagentos.cli._common import EXIT_ERROR, EXIT_INTERRUPTED, fail, stdout
from llmagentos.codegen.prompts import DEFAULT_VARIANT
from llmagentos.exceptions import LLMAgentOSError

if TYPE_CHECKING:
    from llmagentos.codegen.evaluate import CodegenReport

__all__ = ["codegen_command"]

RESULTS_FILE = "results.json"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _summary(console: Console, report: CodegenReport, per_task: bool) -> None:
    n = len(report.tasks)
    table = Table(
        title=f"{escape(report.model)}: {n} tasks, prompt '{report.variant}'",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("pass@1 (greedy)", _percent(report.pass_at_1_greedy))
    for r in range(report.repairs + 1):
        solved = round(report.solved_after(r) * n)
        table.add_row(f"solved after {r} repairs", f"{_percent(report.solved_after(r))} ({solved})")
    if report.samples:
        for k in sorted({1, report.samples}):
            label = f"pass@{k} ({report.samples} samples, T={report.temperature:g})"
            table.add_row(label, _percent(report.pass_at(k)))
    table.add_row("mean first-attempt test pass rate", _percent(report.mean_first_pass_rate))
    console.print(table)
    if per_task:
        rows = Table(box=box.SIMPLE_HEAD, title="per task", title_justify="left")
        for column in ("task", "solved at", "first attempt", "sample passes"):
            rows.add_column(column, justify="left" if column == "task" else "right")
        for result in report.tasks:
            first = result.greedy.attempts[0] if result.greedy.attempts else None
            at = result.greedy.solved_at
            rows.add_row(
                result.task_id,
                "-" if at is None else ("first" if at == 0 else f"repair {at}"),
                "-" if first is None else f"{first.passed}/{first.total}",
                f"{result.sample_passes}/{len(result.samples)}" if result.samples else "-",
            )
        console.print(rows)


def _model_options(model: str, extra_body: str | None) -> dict[str, Any]:
    if extra_body is None:
        return {}
    if model.startswith("local:"):
        fail("--extra-body is for OpenAI-compatible servers, not the embedded model")
    try:
        fields = json.loads(extra_body)
    except json.JSONDecodeError as err:
        fail(f"--extra-body: not JSON: {err}")
    if not isinstance(fields, dict):
        fail(f"--extra-body: expected a JSON object, got {extra_body!r}")
    return {"extra_body": fields}


def codegen_command(
    *,
    model: Annotated[
        str,
        typer.Option(
            metavar="ID",
            help="Model id: local:smollm2, openai:<model>, or http://host:port/v1#<model>.",
        ),
    ] = "local:smollm2",
    repairs: Annotated[
        int, typer.Option(min=0, max=10, metavar="K", help="Repairs after a failed attempt.")
    ] = 2,
    samples: Annotated[
        int,
        typer.Option(min=0, max=100, metavar="N", help="Sampled first attempts per task (pass@k)."),
    ] = 0,
    temperature: Annotated[
        float,
        typer.Option(min=0.0, max=2.0, metavar="T", help="Sampling temperature of the samples."),
    ] = 0.8,
    tasks: Annotated[
        str, typer.Option(metavar="IDS", help="Comma-separated task ids, or 'all'.")
    ] = "all",
    task_file: Annotated[
        Path | None,
        typer.Option(metavar="TOML", help="A task file instead of the bundled set."),
    ] = None,
    prompt: Annotated[
        str,
        typer.Option(
            metavar="NAME", help="Prompt variant: fresh, complete, plain, implement, example."
        ),
    ] = DEFAULT_VARIANT,
    max_tokens: Annotated[
        int, typer.Option(min=16, max=8192, metavar="N", help="Token budget of each reply.")
    ] = 384,
    resample: Annotated[
        int,
        typer.Option(
            min=0, max=10, metavar="N", help="Retries of a repair that repeats earlier code."
        ),
    ] = 2,
    extra_body: Annotated[
        str | None,
        typer.Option(
            metavar="JSON",
            help="Fields added to each request to an OpenAI-compatible server, e.g. "
            "'{\"repeat_penalty\": 1.0}'.",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Where results.json goes.")
    ] = Path("runs/codegen"),
    per_task: Annotated[bool, typer.Option(help="Show a row per task.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
    ] = False,
) -> None:
    """Write each task's function with the model, test it in the sandbox, repair; score it.

    Reports pass@1 (greedy), solved after r repairs, and pass@k from sampled attempts;
    writes every attempt to DIR/results.json.
    """
    from llmagentos.codegen.evaluate import evaluate
    from llmagentos.codegen.prompts import prompt_variant
    from llmagentos.codegen.tasks import load_tasks, select_tasks
    from llmagentos.kernel.default import backend_stack

    try:
        chosen = select_tasks(load_tasks(task_file), tasks)
        prompt_variant(prompt)
        backend, _ = backend_stack(model, **_model_options(model, extra_body))
    except LLMAgentOSError as err:
        fail(err)
    console = stdout()
    total = len(chosen) * (1 + samples)
    progress = Progress(
        TextColumn("[bold]codegen"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    bar = progress.add_task("codegen", total=total, current="")

    def advance(task_id: str, what: str) -> None:
        progress.update(bar, advance=1, current=f"{task_id} {what}")

    try:
        with progress:
            report = evaluate(
                chosen,
                backend,
                repairs=repairs,
                samples=samples,
                temperature=temperature,
                variant=prompt,
                max_tokens=max_tokens,
                resample=resample,
                model_name=model,
                progress=advance,
            )
    except KeyboardInterrupt:
        typer.echo("interrupted: no results written", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except LLMAgentOSError as err:
        fail(err, EXIT_ERROR)
    finally:
        backend.close()
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
    path = write_atomic(out / RESULTS_FILE, lambda tmp: tmp.write_text(text + "\n", "utf-8"))
    if not quiet:
        _summary(console, report, per_task)
        console.print(f"results: {escape(str(path))}", highlight=False)
