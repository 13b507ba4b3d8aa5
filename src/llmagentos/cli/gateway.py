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
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Worker processes serving the port; more than 1 needs [gateway] redis_url "
            "(they share rate limits, circuit breakers and the run-time registry there).",
        ),
    ] = 1,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
) -> None:
    """Route /<service>/<path> to the services' replicas; admin at /gateway/services.

    The config is checked before anything listens (with keys or JWTs, the principal
    secret too: LLMAGENTOS_PRINCIPAL_SECRET). Ctrl-C (or SIGTERM) lets in-flight
    requests finish and refuses new ones, in every worker.
    """
    from llmagentos.gateway.workers import build_gateway, check_workers, run_workers

    try:
        tls = uvicorn_tls(tls_cert, tls_key)
        # With workers, this process only checks: each worker builds its own gateway.
        log_here = access_log if workers == 1 else None
        app, loaded = build_gateway(
            config, access_log=log_here, access_log_buffer=access_log_buffer
        )
        check_workers(workers, loaded)
        if workers > 1:
            from llmagentos.gateway.access_log import configure_access_log

            checked = configure_access_log(access_log, max_pending=access_log_buffer)
            if checked is not None:  # it can be opened; the workers open their own
                checked.close()
    except LLMAgentOSError as err:
        fail(err)
    import uvicorn

    from llmagentos._heap import prepare_gc_for_serving
    from llmagentos.gateway.direct_path import GATEWAY_HTTP
    from llmagentos.load_shedding import EVENT_LOOP
    from llmagentos.telemetry.setup import configure_from_env

    names = ", ".join(loaded.registry.names()) or "no services yet"
    scheme = "https" if tls else "http"
    processes = f", {workers} workers" if workers > 1 else ""
    typer.echo(f"gateway on {scheme}://{host}:{port} ({names}{processes})", err=True)
    # uvicorn's own logging config would close every handler set up before it (the
    # access log's included): plain stderr lines for its warnings instead.
    logging.basicConfig(format="%(levelname)s: %(name)s: %(message)s", level=logging.WARNING)
    if workers > 1:
        run_workers(
            config, workers, host=host, port=port, access_log=access_log,
            access_log_buffer=access_log_buffer, tls=tls,
        )  # fmt: skip
        return
    try:  # LLMAGENTOS_TELEMETRY=otlp|console|file traces this process (docs/telemetry.md)
        configure_from_env("gateway")
    except LLMAgentOSError as err:
        fail(err)
    prepare_gc_for_serving()
    # The gateway is the edge: the client is the TCP peer, never what X-Forwarded-For
    # claims (per-address limits and the admin routes' loopback rule depend on it).
    # uvicorn's own access log is off: the gateway writes its own, and uvicorn formats
    # its line's fields on every response even when its logger drops the line.
    uvicorn.run(
        app, host=host, port=port, log_level="warning", log_config=None,
        timeout_graceful_shutdown=10, proxy_headers=False, loop=EVENT_LOOP, http=GATEWAY_HTTP,
        access_log=False, **tls,
    )  # fmt: skip
