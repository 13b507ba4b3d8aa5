"""``llmagentos gateway CONFIG``: the API gateway in front of the module services."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmagentos.cli._common import fail
from llmagentos.exceptions import LLMAgentOSError

__all__ = ["gateway_command"]


def gateway_command(
    config: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="The gateway config (TOML): services, limits.")
    ],
    *,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Route /<service>/<path> to the services' replicas; admin at /gateway/services.

    The config is checked before anything listens. Ctrl-C (or SIGTERM) lets in-flight
    requests finish and refuses new ones.
    """
    from llmagentos.gateway.app import gateway_app
    from llmagentos.gateway.config import load_gateway_config
    from llmagentos.gateway.openai_face import OpenAIFace

    try:
        loaded = load_gateway_config(config)
        face = OpenAIFace(loaded.exposed) if loaded.exposed else None
        app = gateway_app(loaded.registry, face=face, **loaded.options)
    except LLMAgentOSError as err:
        fail(err)
    import uvicorn

    names = ", ".join(loaded.registry.names()) or "no services yet"
    typer.echo(f"gateway on http://{host}:{port} ({names})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)
