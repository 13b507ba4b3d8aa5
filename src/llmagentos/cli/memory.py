"""``llmagentos memory put|search|get|list|delete|state``: a memory store from the shell."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmagentos.cli._common import fail, show_help_without_command, stdout
from llmagentos.exceptions import LLMAgentOSError

if TYPE_CHECKING:
    from llmagentos.memory import MemoryManager, Namespace

__all__ = ["memory_app"]

memory_app = typer.Typer(
    help="Read and write a memory store (SQLite file or postgresql:// URL).",
    no_args_is_help=False,
)

Store = Annotated[
    str | None,
    typer.Option(
        envvar="LLMAGENTOS_MEMORY",
        metavar="DB|URL",
        help="The store (default: $LLMAGENTOS_HOME/memory.db, ~/.llmagentos/memory.db).",
    ),
]
Tenant = Annotated[str, typer.Option(help="The tenant.")]
AgentName = Annotated[str, typer.Option("--agent", help="The agent (or collection).")]
Kind = Annotated[str, typer.Option(help="episodic, semantic or skill.")]
Embedder = Annotated[
    str,
    typer.Option(help="Embedder of a new namespace: local:minilm, hash:<dim>, ..., or 'none'."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@memory_app.callback(invoke_without_command=True)
def _group(context: typer.Context) -> None:
    show_help_without_command(context)


@contextmanager
def _opened(store: str | None, embedder: str) -> Iterator[MemoryManager]:
    from llmagentos.memory import MemoryManager

    try:
        manager = MemoryManager(store, embedder=None if embedder == "none" else embedder)
    except LLMAgentOSError as err:
        fail(err)
    try:
        yield manager
    except LLMAgentOSError as err:
        fail(err)
    finally:
        manager.close()


def _namespace(
    manager: MemoryManager, tenant: str, agent: str, kind: str, *, create: bool
) -> Namespace:
    from llmagentos.memory import Namespace

    if create:
        return manager.namespace(tenant, agent, kind)  # type: ignore[arg-type]
    return Namespace(tenant, agent, kind)  # type: ignore[arg-type]


def _print_items(rows: list[dict[str, Any]], as_json: bool, extra: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(show_lines=False)
    for column in ("id", *([extra] if extra else []), "text", "metadata"):
        table.add_column(column, overflow="fold")
    for row in rows:
        item = row.get("item", row)
        cells = [item["id"][:12]]
        if extra:
            cells.append(f"{row[extra]:.4f}" if isinstance(row[extra], float) else str(row[extra]))
        cells += [item["text"][:200], json.dumps(item["metadata"], ensure_ascii=False)]
        table.add_row(*cells)
    stdout().print(table)


@memory_app.command("put")
def put_command(
    texts: Annotated[
        list[str] | None, typer.Argument(help="Texts to store; '-' reads lines from stdin.")
    ] = None,
    *,
    metadata: Annotated[
        str | None, typer.Option(metavar="JSON", help="Metadata for every item.")
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="A key (one text only): rewriting it replaces the item.")
    ] = None,
    store: Store = None,
    tenant: Tenant = "default",
    agent: AgentName = "cli",
    kind: Kind = "semantic",
    embedder: Embedder = "local:minilm",
) -> None:
    """Store texts (one item each) and print their ids."""
    lines = list(texts or [])
    if lines == ["-"]:
        lines = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not lines:
        fail("texts: give at least one text (or '-' to read lines from stdin)")
    meta: Any = {}
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError as err:
            fail(f"--metadata: not JSON ({err})")
    if key is not None and len(lines) != 1:
        fail("--key: a key names one item; give exactly one text")
    with _opened(store, embedder) as manager:
        ns = _namespace(manager, tenant, agent, kind, create=True)
        items = [{"text": t, "metadata": meta, **({"key": key} if key else {})} for t in lines]
        result = manager.put(ns, items)
        for item_id in result.ids:
            typer.echo(item_id)
        typer.echo(
            f"stored {len(result.ids)} in {ns} ({result.cost.seconds * 1000:.1f} ms, "
            f"{result.cost.embedded_texts} embedded, {result.evicted} evicted)",
            err=True,
        )


@memory_app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    *,
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="How many hits.")] = 10,
    mode: Annotated[str, typer.Option(help="lexical, vector or hybrid.")] = "hybrid",
    where: Annotated[str | None, typer.Option(metavar="JSON", help="A metadata filter.")] = None,
    store: Store = None,
    tenant: Tenant = "default",
    agent: AgentName = "cli",
    kind: Kind = "semantic",
    embedder: Embedder = "local:minilm",
    as_json: AsJson = False,
) -> None:
    """Search a namespace and print the hits, best first."""
    try:
        condition = None if where is None else json.loads(where)
    except ValueError as err:
        fail(f"--where: not JSON ({err})")
    with _opened(store, embedder) as manager:
        ns = _namespace(manager, tenant, agent, kind, create=False)
        result = manager.search(ns, query, k=k, mode=mode, where=condition)  # type: ignore[arg-type]
        rows = [
            {
                "item": h.item.to_json(),
                "score": h.score,
                "lexical_rank": h.lexical_rank,
                "vector_rank": h.vector_rank,
            }
            for h in result.hits
        ]
        _print_items(rows, as_json, extra="score")
        if not as_json:
            typer.echo(
                f"{len(rows)} hits ({result.mode}, {result.cost.seconds * 1000:.1f} ms)", err=True
            )


@memory_app.command("get")
def get_command(
    item_id: Annotated[str, typer.Argument(metavar="ID")],
    *,
    store: Store = None,
    tenant: Tenant = "default",
    agent: AgentName = "cli",
    kind: Kind = "semantic",
) -> None:
    """Print one item as JSON."""
    with _opened(store, "none") as manager:
        item = manager.get(_namespace(manager, tenant, agent, kind, create=False), item_id)
        typer.echo(json.dumps(item.to_json(), indent=2, ensure_ascii=False))


@memory_app.command("list")
def list_command(
    *,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    store: Store = None,
    tenant: Tenant = "default",
    agent: AgentName = "cli",
    kind: Kind = "semantic",
    as_json: AsJson = False,
) -> None:
    """Print a namespace's items, newest first."""
    with _opened(store, "none") as manager:
        ns = _namespace(manager, tenant, agent, kind, create=False)
        items = manager.list(ns, limit=limit, offset=offset)
        _print_items([i.to_json() for i in items], as_json)


@memory_app.command("delete")
def delete_command(
    ids: Annotated[list[str], typer.Argument(metavar="ID...")],
    *,
    store: Store = None,
    tenant: Tenant = "default",
    agent: AgentName = "cli",
    kind: Kind = "semantic",
) -> None:
    """Delete items (all or none: an unknown id deletes nothing)."""
    with _opened(store, "none") as manager:
        count = manager.delete(_namespace(manager, tenant, agent, kind, create=False), ids)
        typer.echo(f"deleted {count}", err=True)


@memory_app.command("state")
def state_command(
    *,
    store: Store = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's namespaces.")] = None,
) -> None:
    """Print the store's state as JSON: namespaces, items, embedders, limits."""
    with _opened(store, "none") as manager:
        state = manager.state(tenant)
        state.pop("embeddings", None)  # this process embedded nothing
        state.pop("owners", None)
        typer.echo(json.dumps(state, indent=2))
