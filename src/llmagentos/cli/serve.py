"""``llmagentos serve CONFIG``: an agent's modules as an HTTP microservice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmagentos.cli._common import fail
from llmagentos.cli._tls import TlsCert, TlsKey, uvicorn_tls
from llmagentos.config import load_config
from llmagentos.exceptions import LLMAgentOSError

__all__ = ["serve_command"]


def serve_command(
    config: Annotated[
        Path,
        typer.Argument(metavar="CONFIG", help="The run config whose agent is served."),
    ],
    *,
    modules: Annotated[
        str,
        typer.Option(
            metavar="KINDS",
            help="Comma-separated module kinds to serve (perception, planning, execution, "
            "learning), or 'all'.",
        ),
    ] = "all",
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8100,
    max_sessions: Annotated[
        int, typer.Option(min=1, metavar="N", help="Sessions kept before the oldest is evicted.")
    ] = 1024,
    state_store: Annotated[
        str | None,
        typer.Option(
            metavar="DB|URL",
            help="Keep sessions outside the replica, so one replica can take over a dead "
            "one's sessions (each call applied once): a SQLite file shared by the "
            "replicas of one machine, or a redis:// URL shared across machines.",
        ),
    ] = None,
    state_secret: Annotated[
        str | None,
        typer.Option(
            envvar="LLMAGENTOS_STATE_SECRET",
            metavar="SECRET",
            help="Sign stored sessions (HMAC-SHA256) and refuse any not signed with it.",
        ),
    ] = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
) -> None:
    """Serve CONFIG's agent modules over HTTP: one agent (and its state) per session.

    Routes: /v1/<kind>/<method>, /v1/agent/..., /healthz, /readyz, /metrics,
    /openapi.json. The config is built once before listening, so a bad one fails here.
    """
    from llmagentos.build import build_agent
    from llmagentos.service.app import KINDS, service_app
    from llmagentos.service.store import open_session_store

    kinds = KINDS if modules == "all" else tuple(k.strip() for k in modules.split(",") if k.strip())
    try:
        tls = uvicorn_tls(tls_cert, tls_key)
        run_config = load_config(config)
        app = service_app(
            lambda: build_agent(run_config),
            name=run_config.name,
            kinds=kinds,
            max_sessions=max_sessions,
            store=None
            if state_store is None
            else open_session_store(
                state_store,
                secret=state_secret,
                # one namespace per service: what it serves, of which config
                namespace=f"llmagentos:sessions:{run_config.name}:{'+'.join(kinds)}",
            ),
        )
    except LLMAgentOSError as err:
        fail(err)
    import uvicorn

    scheme = "https" if tls else "http"
    where = f"{scheme}://{host}:{port}"
    typer.echo(f"serving {', '.join(kinds)} of {run_config.name} on {where}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10, **tls)
