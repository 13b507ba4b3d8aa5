"""``llmagentos env list``: the environment ids a config's ``env.id`` accepts."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llmagentos.cli._common import show_help_without_command, stdout

__all__ = ["env_app", "env_rows"]

env_app = typer.Typer(
    help="Environments you can name in a config's env.id.",
    add_completion=False,
)


@env_app.callback(invoke_without_command=True)
def _group(context: typer.Context) -> None:
    show_help_without_command(context)


#: The Gymnasium families a tabular agent can learn without extra dependencies.
DEFAULT_FAMILIES = ("toy_text", "classic_control")


def _family(entry_point: Any) -> str:
    """``toy_text`` for ``gymnasium.envs.toy_text.taxi:TaxiEnv``; the package otherwise."""
    module = (
        entry_point.partition(":")[0]
        if isinstance(entry_point, str)
        else getattr(entry_point, "__module__", "")
    )
    parts = module.split(".")
    if parts[:2] == ["gymnasium", "envs"]:
        return parts[2] if len(parts) > 2 else "other"
    return parts[0] or "other"


def env_rows(*, every: bool = False) -> list[tuple[str, str, str, str]]:
    """``(id, source, family, max steps)`` for llmagentos' own environments and Gymnasium's.

    Args:
        every: list every Gymnasium id, not only the toy_text and classic_control ones.
    """
    import gymnasium

    from llmagentos import registry

    rows = [
        (entry.name, "llmagentos", entry.description or "-", "-")
        for entry in registry.entries("env")
    ]
    for env_id, spec in sorted(gymnasium.envs.registry.items()):
        family = _family(spec.entry_point)
        if every or family in DEFAULT_FAMILIES:
            steps = "-" if spec.max_episode_steps is None else str(spec.max_episode_steps)
            rows.append((env_id, "gymnasium", family, steps))
    return rows


@env_app.command("list")
def list_envs(
    every: Annotated[
        bool,
        typer.Option("--all", help="Every Gymnasium id (box2d, mujoco, ... may need extras)."),
    ] = False,
) -> None:
    """List environment ids: llmagentos' registry, then Gymnasium's."""
    table = Table(title="environments" if every else "environments (--all for every one)")
    table.add_column("id", no_wrap=True)
    table.add_column("source")
    table.add_column("family / description")
    table.add_column("max steps", justify="right")
    for row in env_rows(every=every):
        table.add_row(*(escape(cell) for cell in row))
    stdout().print(table)
