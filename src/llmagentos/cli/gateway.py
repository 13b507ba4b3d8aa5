"""``llmagentos gateway CONFIG``: the API gateway in front of the module services."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from llmagentos.cli._common import fail
from llmagentos.cli._tls import TlsCert, TlsKey, uvicorn_tls
from llmagentos.exceptions import LLMAgentOSError

__all__ = ["gateway_command"]


def gateway_command(
    config: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="The gateway config (TOML): services, limits.")
    ],
    *,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8080,
    access_log: Annotated[
        str,
        typer.Option(
            metavar="FILE|-|off",
            help="The JSON access log, a line per request: a file (appended), - for "
            "stderr, or off.",
        ),
    ] = "-",
    access_log_buffer: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="LINES",
            help="Access-log lines kept while the log is slower than the traffic; more "
            "are dropped and counted in /metrics.",
        ),
    ] = 10_000,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
) -> None:
    """Route /<service>/<path> to the services' replicas; admin at /gateway/services.

    The config is checked before anything listens (with keys or JWTs, the principal
    secret too: LLMAGENTOS_PRINCIPAL_SECRET). Ctrl-C (or SIGTERM) lets in-flight
    requests finish and refuses new ones.
    """
    from llmagentos.gateway.access_log import configure_access_log
    from llmagentos.gateway.app import gateway_app
    from llmagentos.gateway.config import load_gateway_config
    from llmagentos.gateway.openai_face import OpenAIFace

    try:
        tls = uvicorn_tls(tls_cert, tls_key)
        loaded = load_gateway_config(config)
        face = OpenAIFace(loaded.exposed) if loaded.exposed else None
        app = gateway_app(loaded.registry, face=face, **loaded.options)
        listener = configure_access_log(access_log, max_pending=access_log_buffer)
        if listener is not None:
            # Flushed when the app shuts down: uvicorn ends a SIGTERMed process itself.
            app.state.gateway.closers.append(listener.close)
    except LLMAgentOSError as err:
        fail(err)
    import uvicorn

    from llmagentos.telemetry.setup import configure_from_env

    try:  # LLMAGENTOS_TELEMETRY=otlp|console|file traces this process (docs/telemetry.md)
        configure_from_env("gateway")
    except LLMAgentOSError as err:
        fail(err)

    names = ", ".join(loaded.registry.names()) or "no services yet"
    typer.echo(f"gateway on {'https' if tls else 'http'}://{host}:{port} ({names})", err=True)
    # uvicorn's own logging config would close every handler set up before it (the
    # access log's included): plain stderr lines for its warnings instead.
    logging.basicConfig(format="%(levelname)s: %(name)s: %(message)s", level=logging.WARNING)
    # The gateway is the edge: the client is the TCP peer, never what X-Forwarded-For
    # claims (per-address limits and the admin routes' loopback rule depend on it).
    uvicorn.run(
        app, host=host, port=port, log_level="warning", log_config=None,
        timeout_graceful_shutdown=10, proxy_headers=False, **tls,
    )  # fmt: skip
