"""``llmagentos search index|query``: a folder of documents as a searchable index.

``index FOLDER`` brings the index up to date (new, modified and deleted files; bad files
reported by path and skipped, exit 1 if any failed); ``query TEXT`` prints the best
passages. The chunks live in the memory store (``--store``) in the namespace
``<tenant>/search.<index>/semantic``; the manifest beside the store, in
``<store folder>/search/<tenant>.<index>.manifest.sqlite`` (or ``--manifest``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmagentos.cli._common import EXIT_ERROR, fail, show_help_without_command, stdout
from llmagentos.exceptions import LLMAgentOSError

if TYPE_CHECKING:
    from llmagentos.search.engine import IndexEvent, SearchEngine

__all__ = ["search_app"]

search_app = typer.Typer(help="Index a folder of documents and search it.", no_args_is_help=False)

Store = Annotated[
    str | None,
    typer.Option(envvar="LLMAGENTOS_MEMORY", metavar="DB", help="The memory store (SQLite file)."),
]
Index = Annotated[str, typer.Option("--index", help="The index's name.")]
Tenant = Annotated[str, typer.Option(help="The tenant.")]
ManifestPath = Annotated[
    Path | None, typer.Option("--manifest", help="The manifest file (default: beside the store).")
]
Embedder = Annotated[
    str, typer.Option(help="Embedder of a new index: local:minilm, hash:<dim>, ..., or 'none'.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@search_app.callback(invoke_without_command=True)
def _group(context: typer.Context) -> None:
    show_help_without_command(context)


def _manifest_path(store: str | None, tenant: str, index: str, given: Path | None) -> Path:
    if given is not None:
        return given
    if store is not None and "://" in store and not store.startswith("sqlite:///"):
        fail("--manifest: give a manifest file for a store that is not a SQLite file")
    from llmagentos.memory.manager import default_path

    folder = (Path(store.removeprefix("sqlite:///")) if store else default_path()).parent
    return folder / "search" / f"{tenant}.{index}.manifest.sqlite"


@contextmanager
def _engine(
    store: str | None,
    tenant: str,
    index: str,
    manifest: Path,
    embedder: str,
    *,
    target_words: int = 200,
    overlap_words: int = 40,
) -> Iterator[SearchEngine]:
    from llmagentos.memory import MemoryManager
    from llmagentos.search.chunking import ChunkSettings
    from llmagentos.search.engine import SearchEngine

    try:
        memory = MemoryManager(store, embedder=None if embedder == "none" else embedder)
    except LLMAgentOSError as err:
        fail(err)
    try:
        chunking = ChunkSettings(target_words, overlap_words)
        with SearchEngine(
            memory, manifest, index=index, tenant=tenant, chunking=chunking
        ) as engine:
            yield engine
    except LLMAgentOSError as err:
        fail(err)
    finally:
        memory.close()


class _Bar:
    """A progress bar over the files to read, with the file being read."""

    def __init__(self, quiet: bool, *, report_failures: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("indexing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[source]}"),
            console=stdout(),
            disable=quiet,
            transient=True,
        )
        self.task = self.progress.add_task("index", total=None, source="")
        # Skipped files go to stderr as they happen (stdout keeps the summary or JSON).
        self.errors = Console(stderr=True, highlight=False) if report_failures else None

    def __call__(self, event: IndexEvent) -> None:
        if event.kind == "scanned":
            self.progress.update(self.task, total=event.total)
            return
        if event.kind == "failed" and self.errors is not None:
            self.errors.print(f"[yellow]skipped[/yellow] {event.source}: {event.detail}")
        self.progress.update(self.task, advance=1, source=event.source)


@search_app.command("index")
def index_command(
    folder: Annotated[Path, typer.Argument(help="The folder of .txt/.md/.html/.pdf files.")],
    *,
    store: Store = None,
    index: Index = "docs",
    tenant: Tenant = "default",
    manifest: ManifestPath = None,
    embedder: Embedder = "local:minilm",
    target_words: Annotated[int, typer.Option(min=1, help="Chunk size in words.")] = 200,
    overlap_words: Annotated[int, typer.Option(min=0, help="Words shared by chunks.")] = 40,
    rehash: Annotated[bool, typer.Option(help="Re-read every file, changed or not.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: AsJson = False,
) -> None:
    """Index FOLDER incrementally; files that cannot be parsed are named and skipped."""
    path = _manifest_path(store, tenant, index, manifest)
    with _engine(
        store,
        tenant,
        index,
        path,
        embedder,
        target_words=target_words,
        overlap_words=overlap_words,
    ) as engine:
        bar = _Bar(quiet or as_json, report_failures=not as_json)
        with bar.progress:
            report = engine.index(folder, rehash=rehash, on_event=bar)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        stdout().print(
            f"{len(report.added)} added, {len(report.updated)} updated, {len(report.deleted)}"
            f" deleted, {report.unchanged} unchanged, {len(report.failed)} failed;"
            f" {report.chunks_written} chunks written, {report.chunks_deleted} deleted"
            f" in {report.seconds:.1f} s"
        )
        for source, reason in report.still_failing:
            stdout().print(f"[yellow]still failing[/yellow] {source}: {reason}")
    if report.failed:
        raise typer.Exit(EXIT_ERROR)


@search_app.command("query")
def query_command(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    *,
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="How many passages.")] = 5,
    mode: Annotated[str, typer.Option(help="lexical, vector or hybrid.")] = "hybrid",
    rerank: Annotated[
        str | None, typer.Option(metavar="MODEL", help="Re-rank with a model (local:smollm2).")
    ] = None,
    candidates: Annotated[int, typer.Option(min=1, help="Candidates to re-rank.")] = 30,
    store: Store = None,
    index: Index = "docs",
    tenant: Tenant = "default",
    manifest: ManifestPath = None,
    embedder: Embedder = "local:minilm",
    as_json: AsJson = False,
) -> None:
    """Print the best passages of the index for QUERY."""
    path = _manifest_path(store, tenant, index, manifest)
    if not path.exists():
        fail(f"--index: no index {index!r} (no manifest at {path}): run 'llmagentos search index'")
    with _engine(store, tenant, index, path, embedder) as engine:
        reranker = None
        if rerank is not None:
            from llmagentos.search.rerank import ModelReranker

            reranker = ModelReranker(rerank)
        hits = engine.search(query, k=k, mode=mode, rerank=reranker, candidates=candidates)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps([hit.to_dict() for hit in hits], indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table()
    for column in ("score", "source", "section", "text"):
        table.add_column(column, overflow="fold")
    for hit in hits:
        score = hit.rerank_score if hit.rerank_score is not None else hit.score
        table.add_row(f"{score:.4f}", hit.source, hit.heading_path, hit.text[:300])
    stdout().print(table)
