"""``llmagentos dashboard``: a local web page of runs, steps, the kernel and the gateway."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from llmagentos.cli._common import fail
from llmagentos.exceptions import LLMAgentOSError, MissingExtraError

__all__ = ["dashboard_command"]


def dashboard_command(
    runs: Annotated[
        Path, typer.Argument(metavar="RUNS_DIR", help="The folder the runs write into.")
    ] = Path("runs"),
    *,
    host: Annotated[
        str, typer.Option(help="Interface to bind (beyond loopback needs a token).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8600,
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding the access token (16+ characters).")
    ] = "LLMAGENTOS_DASHBOARD_TOKEN",
    gateway: Annotated[
        str | None,
        typer.Option(metavar="URL", help="A gateway to show (services, health, breakers)."),
    ] = None,
    gateway_key_env: Annotated[
        str,
        typer.Option(help="Environment variable holding the gateway's admin key, if it has one."),
    ] = "LLMAGENTOS_GATEWAY_ADMIN_KEY",
    memory: Annotated[
        str | None,
        typer.Option(
            metavar="STORE", help="A memory store to show (SQLite path or postgresql:// URL)."
        ),
    ] = None,
) -> None:
    """Serve a local dashboard: runs and their learning curves, each step explained,
    trace waterfalls, the kernel, memory, approvals (with buttons) and the gateway."""
    from llmagentos.dashboard import check_bind, serve_dashboard

    token = os.environ.get(token_env) or None
    try:
        check_bind(host, token)
        watcher = None
        if gateway is not None:
            from llmagentos.dashboard.gateway_view import GatewayWatcher

            watcher = GatewayWatcher(gateway, admin_key=os.environ.get(gateway_key_env) or None)
        manager = None
        if memory is not None:
            from llmagentos.memory import MemoryManager

            manager = MemoryManager(memory, embedder=None)
    except (LLMAgentOSError, MissingExtraError) as err:
        fail(err)
    where = runs if runs.is_dir() else f"{runs} (missing: shown as such)"
    typer.echo(f"dashboard on http://{host}:{port} for runs in {where}", err=True)
    serve_dashboard(runs, host=host, port=port, token=token, gateway=watcher, memory=manager)
