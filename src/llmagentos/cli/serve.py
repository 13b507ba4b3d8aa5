"""``llmagentos serve CONFIG``: an agent's modules as an HTTP microservice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmagentos.cli._common import fail
from llmagentos.cli._tls import TlsCert, TlsKey, uvicorn_tls
from llmagentos.config import load_config
from llmagentos.exceptions import LLMAgentOSError
from llmagentos.load_shedding import EVENT_LOOP, SHEDDING_DEFAULTS, SheddingLimits

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
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Sessions in memory, all tenants together (then the "
            "busiest tenant's idle one is saved and evicted with a store, else refused).",
        ),
    ] = 1024,
    max_sessions_per_tenant: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Sessions in memory per tenant (default 256): past it a "
            "tenant's own idle session is saved and evicted with a store, else refused (429).",
        ),
    ] = None,
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
            help="Seal stored sessions (HMAC-SHA256 over service, tenant, session, version "
            "and state) and refuse any not sealed with it. Required with --state-store.",
        ),
    ] = None,
    insecure_unsigned_state: Annotated[
        bool,
        typer.Option(
            "--insecure-unsigned-state",
            help="Allow a --state-store without --state-secret: anyone who can write the "
            "store can then forge sessions (pickled state is still never loaded unsealed).",
        ),
    ] = False,
    require_principal: Annotated[
        bool,
        typer.Option(
            "--require-principal",
            help="Refuse (401) every request without a principal signed by the gateway "
            "with LLMAGENTOS_PRINCIPAL_SECRET, except /healthz, /readyz, /metrics and "
            "/openapi.json.",
        ),
    ] = False,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, metavar="BYTES", help="Longest request body read (413 past it).")
    ] = 1 << 20,
    memory: Annotated[
        str | None,
        typer.Option(
            metavar="DB|URL",
            help="Also serve a memory manager under /v1/memory (namespaced by the caller's "
            "tenant): a SQLite file, or a postgresql:// URL shared across machines.",
        ),
    ] = None,
    embedder: Annotated[
        str,
        typer.Option(
            metavar="ID",
            help="Embedder of new memory namespaces: local:minilm, hash:<dim>, "
            "openai:<model>, http://host:port/v1#<model>, or 'none' (lexical only).",
        ),
    ] = "local:minilm",
    max_in_flight: Annotated[
        int,
        typer.Option(
            min=0,
            help="Requests handled at once (0: no limit); past them and the queue, 503 at "
            "once with Retry-After.",
        ),
    ] = SHEDDING_DEFAULTS.max_in_flight,
    max_queue: Annotated[
        int, typer.Option(min=0, help="Requests that may wait for a slot past --max-in-flight.")
    ] = SHEDDING_DEFAULTS.max_queue,
    queue_timeout: Annotated[
        float,
        typer.Option(min=0.0, metavar="SECONDS", help="How long a request may wait for a slot."),
    ] = SHEDDING_DEFAULTS.queue_timeout,
    reads_per_turn: Annotated[
        int,
        typer.Option(
            min=0,
            help="New requests read per turn of the event loop, while a slot is free; the "
            "others wait unread, each for at most --queue-timeout (0: read all at once).",
        ),
    ] = SHEDDING_DEFAULTS.reads_per_turn,
    max_loop_lag: Annotated[
        float,
        typer.Option(
            min=0.0,
            metavar="SECONDS",
            help="Shed new requests while the event loop runs this late (0: never on lag).",
        ),
    ] = SHEDDING_DEFAULTS.max_loop_lag,
    body_timeout: Annotated[
        float,
        typer.Option(
            min=0.0,
            metavar="SECONDS",
            help="How long a request's body may take to arrive, read before it takes a "
            "slot; past it, 408 and the connection closed (0: no limit).",
        ),
    ] = SHEDDING_DEFAULTS.body_timeout,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
) -> None:
    """Serve CONFIG's agent modules over HTTP: one agent (and its state) per session.

    Routes: /v1/<kind>/<method>, /v1/agent/..., /v1/sessions, /v1/memory/... (with
    --memory), /healthz, /readyz, /metrics, /openapi.json. Sessions are namespaced
    by the tenant of the gateway's
    signed principal (LLMAGENTOS_PRINCIPAL_SECRET). The config is built once before
    listening, so a bad one fails here.
    """
    from llmagentos.build import build_agent
    from llmagentos.service.app import KINDS, service_app
    from llmagentos.service.store import open_session_store

    kinds = KINDS if modules == "all" else tuple(k.strip() for k in modules.split(",") if k.strip())
    try:
        tls = uvicorn_tls(tls_cert, tls_key)
        run_config = load_config(config)
        manager = None
        if memory is not None:
            from llmagentos.memory import MemoryManager

            manager = MemoryManager(memory, embedder=None if embedder == "none" else embedder)
        app = service_app(
            lambda: build_agent(run_config),
            name=run_config.name,
            kinds=kinds,
            max_sessions=max_sessions,
            max_sessions_per_tenant=max_sessions_per_tenant,
            store=None
            if state_store is None
            else open_session_store(
                state_store,
                secret=state_secret,
                # one namespace per service: what it serves, of which config
                namespace=f"llmagentos:sessions:{run_config.name}:{'+'.join(kinds)}",
                allow_unsigned=insecure_unsigned_state,
            ),
            require_principal=require_principal,
            max_body_bytes=max_body_bytes,
            memory=manager,
            shedding=SheddingLimits(
                max_in_flight,
                max_queue,
                queue_timeout,
                max_loop_lag=max_loop_lag,
                reads_per_turn=reads_per_turn,
                body_timeout=body_timeout,
            ),
        )
    except LLMAgentOSError as err:
        fail(err)
    import uvicorn

    from llmagentos._heap import prepare_gc_for_serving
    from llmagentos._http_protocol import BOUNDED_HTTP
    from llmagentos.telemetry.setup import configure_from_env

    try:  # LLMAGENTOS_TELEMETRY=otlp|console|file traces this process (docs/telemetry.md)
        configure_from_env(run_config.name)
    except LLMAgentOSError as err:
        fail(err)

    scheme = "https" if tls else "http"
    where = f"{scheme}://{host}:{port}"
    typer.echo(f"serving {', '.join(kinds)} of {run_config.name} on {where}", err=True)
    prepare_gc_for_serving()
    uvicorn.run(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10,
        loop=EVENT_LOOP, http=BOUNDED_HTTP, access_log=False, **tls,
    )  # fmt: skip
