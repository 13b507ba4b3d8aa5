"""The ``llmagentos`` command: the typer app and the entry point that maps errors to exit codes.

Exit codes: 0 success, 1 a run failed after it started, 2 bad config or options,
3 a durable run paused for approval or stopped by its budget, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

# typer >= 0.29 carries its own click and raises its own exception type for usage errors.
from typer import TyperException as CommandLineError

from llmagentos._version import __version__
from llmagentos.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    one_line,
    show_help_without_command,
)
from llmagentos.cli.ask import ask_command
from llmagentos.cli.codegen import codegen_command
from llmagentos.cli.dashboard import dashboard_command
from llmagentos.cli.deploy import down_command, status_command, up_command
from llmagentos.cli.env import env_app
from llmagentos.cli.explain import explain_command
from llmagentos.cli.gateway import gateway_command
from llmagentos.cli.keys import keys_app
from llmagentos.cli.mcp import mcp_app
from llmagentos.cli.memory import memory_app
from llmagentos.cli.recommend import recommend_app
from llmagentos.cli.registry import registry_app
from llmagentos.cli.run import run_command
from llmagentos.cli.runs import runs_app
from llmagentos.cli.search import search_app
from llmagentos.cli.serve import serve_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="llmagentos",
    help="llmagentos: build, train and evaluate modular agents from config files.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"llmagentos {__version__}")
        raise typer.Exit


@app.callback(invoke_without_command=True)
def _root(
    context: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """llmagentos: build, train and evaluate modular agents from config files."""
    show_help_without_command(context)


app.command("run")(run_command)
app.command("codegen")(codegen_command)
app.command("ask")(ask_command)
app.command("serve")(serve_command)
app.command("gateway")(gateway_command)
app.command("up")(up_command)
app.command("down")(down_command)
app.command("status")(status_command)
app.command("explain")(explain_command)
app.command("dashboard")(dashboard_command)
app.add_typer(env_app, name="env")
app.add_typer(mcp_app, name="mcp")
app.add_typer(memory_app, name="memory")
app.add_typer(search_app, name="search")
app.add_typer(recommend_app, name="recommend")
app.add_typer(keys_app, name="keys")
app.add_typer(registry_app, name="registry")
app.add_typer(runs_app, name="runs")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Usage errors become one ``error: ...`` line on stderr with exit code 2, instead of
    a boxed help screen, so scripts and people both get the problem in one line.
    """
    command = typer.main.get_command(app)
    try:
        code = command.main(
            args=None if argv is None else list(argv),
            prog_name="llmagentos",
            standalone_mode=False,
        )
    except CommandLineError as err:
        context = getattr(err, "ctx", None)
        hint = f" (try '{context.command_path} --help')" if context is not None else ""
        typer.echo(f"error: {one_line(err.format_message())}{hint}", err=True)
        return int(getattr(err, "exit_code", EXIT_USAGE))
    except typer.Abort:
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else 0
