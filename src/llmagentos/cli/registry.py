"""``llmagentos registry list [KIND]``: the names a config can use for modules and parts."""

from __future__ import annotations

import difflib
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from llmagentos import registry
from llmagentos.cli._common import fail, show_help_without_command, stdout
from llmagentos.exceptions import RegistryError

__all__ = ["registry_app"]

registry_app = typer.Typer(
    help="Registered modules and components (the names a config's type= accepts).",
    add_completion=False,
)


@registry_app.callback(invoke_without_command=True)
def _group(context: typer.Context) -> None:
    show_help_without_command(context)


@registry_app.command("list")
def list_entries(
    kind: Annotated[
        str | None,
        typer.Argument(
            help="Only this kind (perception, planning, execution, learning, selector, ...).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List registered names by kind, with what each one does."""
    kinds = registry.kinds()
    if kind is not None and kind not in kinds:
        fail(RegistryError("registry kind", kind, difflib.get_close_matches(kind, kinds, n=3)))
    table = Table(title="registry" if kind is None else f"registry: {kind}")
    table.add_column("kind")
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    for each in [kind] if kind is not None else kinds:
        for entry in registry.entries(each):
            table.add_row(entry.kind, entry.name, escape(entry.description))
    stdout().print(table)
