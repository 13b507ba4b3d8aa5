"""Helpers shared by the commands: the error line and the consoles."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "fail",
    "one_line",
    "show_help_without_command",
    "stdout",
]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3  # a durable run paused for approval or stopped by its budget
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def one_line(message: object) -> str:
    """``message`` as a single line (YAML and TOML parser errors span several)."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def fail(message: object, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    # Plain echo, not rich: messages quote config values, which rich would read as markup.
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def show_help_without_command(context: typer.Context) -> None:
    """In a group's callback: print the help and exit 2 when no command was given."""
    if context.invoked_subcommand is None:
        typer.echo(context.get_help())
        raise typer.Exit(EXIT_USAGE)


def stdout() -> Console:
    """The console for tables and progress (resolves ``sys.stdout`` when it prints)."""
    return Console(highlight=False)
