"""``llmagentos explain``: why a run's agent did what it did at one step.

Without ``--step`` it lists the episode's steps; without ``--episode``, the traced
episodes. ``--json`` prints the explanation as data (what the dashboard shows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from llmagentos.cli._common import fail, stdout
from llmagentos.exceptions import RunLookupError
from llmagentos.explain import RunFolder, StepExplanation, explain_step, open_run

__all__ = ["explain_command"]


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = "".join(ch if ch.isprintable() or ch == "\n" else f"\\u{ord(ch):04x}" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _episodes_table(run: RunFolder) -> None:
    episodes = run.episodes()
    console = stdout()
    console.print(f"[bold]{escape(run.name)}[/] ({run.state}) in {escape(str(run.path))}")
    if not episodes:
        console.print("no steps are traced in this run (see [output] trace_train_every)")
        return
    table = Table(box=box.SIMPLE_HEAD, title="traced episodes")
    for column in ("episode", "phase", "steps", "return", "end"):
        table.add_column(column)
    for item in episodes:
        table.add_row(
            str(item["episode"]), "train" if item["training"] else "eval", str(item["steps"]),
            f"{item['return']:g}", item["end"],
        )  # fmt: skip
    console.print(table)
    console.print("explain a step with --episode E --step S")


def _steps_table(run: RunFolder, episode: int) -> None:
    records = list(run.steps(episode))
    if not records:
        try:
            run.step(episode, 0)
        except RunLookupError as err:
            fail(err)
    table = Table(box=box.SIMPLE_HEAD, title=f"episode {episode} of {escape(run.name)}")
    for column in ("step", "action", "reward", "reason"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(
            str(record.get("step")), escape(_short(record.get("action"), 40)),
            f"{record.get('reward', 0):g}", escape(_short(record.get("reason") or "", 120)),
        )  # fmt: skip
    stdout().print(table)


def _print(explanation: StepExplanation) -> None:
    e = explanation
    console = stdout()

    def line(label: str, value: Any) -> None:
        console.print(f"[bold]{label:<10}[/] {escape(_short(value))}", highlight=False)

    phase = "training" if e.training else "evaluation"
    console.rule(f"episode {e.episode}, step {e.step} ({phase})")
    line("saw", e.observation)
    if e.features != e.observation:
        line("features", e.features)
    if e.options:
        table = Table(box=box.SIMPLE_HEAD, title="what it considered")
        for column in ("action", "Q", "visits", ""):
            table.add_column(column)
        for option in e.options:
            marks = [
                m for m, on in (("chosen", option.chosen), ("proposed", option.proposed)) if on
            ]
            table.add_row(
                escape(option.name), "-" if option.q is None else f"{option.q:.3f}",
                "-" if option.visits is None else str(option.visits), ", ".join(marks),
            )  # fmt: skip
        console.print(table)
    if e.proposal:
        p = e.proposal
        line("proposal", f"{p.get('name')} ({p.get('from')}): {p.get('reason') or '-'}")
    if e.q_unsure:
        line("Q", e.q_unsure)
    if e.overruled:
        line("overruled", e.overruled)
    did = e.action_name or e.action
    line("did", f"{did} ({e.source or 'planner'}): {e.reason or 'no reason given'}")
    end = " (terminated)" if e.terminated else " (truncated)" if e.truncated else ""
    line("got", f"reward {e.reward:g}{end}" if e.reward is not None else "-")
    line("learned", e.learned or (e.learning if e.learning else "nothing (not training)"))
    for call in e.model_calls:
        where = f", asked at {call.asked_at}" if call.asked_at else ""
        tokens = f"{call.input_tokens} in / {call.output_tokens} out tokens"
        ms = "-" if call.milliseconds is None else f"{call.milliseconds:.1f} ms"
        line(
            "model",
            f"{call.model}: {tokens}, {ms}, cache {'hit' if call.cache_hit else 'miss'}{where}",
        )
        for message in call.prompt or []:
            role, content = str(message.get("role")), _short(message.get("content"), 2000)
            console.print(f"  [dim]{escape(role)}:[/] {escape(content)}", highlight=False)
        for message in call.reply or []:
            content = _short(message.get("content"), 2000)
            console.print(f"  [dim]reply:[/] {escape(content)}", highlight=False)
    for tool in e.tool_calls:
        state = "ok" if tool.get("ok") else f"failed: {tool.get('error')}"
        line("tool", f"{tool.get('tool')} {state}")
    for found in e.retrievals:
        ids = ", ".join(str(h.get("id")) for h in found.get("hits", []))
        line("memory", f"{found.get('namespace')}: {ids or 'nothing found'}")
    for note in e.notes:
        console.print(f"[dim]note: {escape(note)}[/]")


def explain_command(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="The run's output folder.")],
    episode: Annotated[
        int | None, typer.Option(min=0, help="The episode (as trace.jsonl numbers it).")
    ] = None,
    step: Annotated[int | None, typer.Option(min=0, help="The step within the episode.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
) -> None:
    """Explain a step: what the agent saw, weighed, did and learned, and why."""
    try:
        folder = open_run(run)
    except RunLookupError as err:
        fail(err)
    if step is not None and episode is None:
        fail("--step needs --episode")
    if episode is None:
        _episodes_table(folder)
        return
    if step is None:
        _steps_table(folder, episode)
        return
    try:
        explanation = explain_step(folder, episode, step)
    except RunLookupError as err:
        fail(err)
    if as_json:
        typer.echo(json.dumps(explanation.to_dict(), indent=2, default=str))
        return
    _print(explanation)
