"""``llmagentos gateway --workers N``: N processes behind one port.

The parent checks the config first (it builds the gateway once, serving nothing), so a
broken one fails before anything listens; then it binds the port and runs uvicorn's
supervisor, which starts N fresh (spawned) processes. Each builds the same gateway from
the same config in :func:`worker_app`, told which by environment variables the parent
sets, and shares rate limits, breakers and the run-time registry through Redis
(``[gateway] redis_url``, required with N > 1; :mod:`.shared_state`).

SIGTERM or Ctrl-C to the parent drains every worker as one process drains: the port
refuses new connections (the parent closes its copy of the socket as the workers close
theirs) and in-flight requests finish. A worker that dies is replaced.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvicorn.supervisors.multiprocess import Multiprocess

from llmagentos.exceptions import ConfigError
from llmagentos.load_shedding import EVENT_LOOP

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from llmagentos.gateway.config import GatewayConfig

__all__ = ["build_gateway", "check_workers", "run_workers", "worker_app"]

ENV_CONFIG = "LLMAGENTOS_GATEWAY_CONFIG"
ENV_ACCESS_LOG = "LLMAGENTOS_GATEWAY_ACCESS_LOG"
ENV_ACCESS_LOG_BUFFER = "LLMAGENTOS_GATEWAY_ACCESS_LOG_BUFFER"
_FACTORY = "llmagentos.gateway.workers:worker_app"


def check_workers(workers: int, loaded: GatewayConfig) -> None:
    """Refuse a count below 1, and several workers with nothing to share state through.

    Raises:
        ConfigError: naming ``--workers`` or ``gateway.redis_url``.
    """
    if workers < 1:
        raise ConfigError("--workers", f"must be at least 1 (got {workers})")
    if workers > 1 and loaded.redis_url is None:
        raise ConfigError(
            "gateway.redis_url",
            f"--workers {workers} runs {workers} processes, which share rate limits, circuit "
            'breakers and the run-time registry through Redis: set redis_url = "redis://'
            'host:port" in [gateway] (or run one worker)',
        )


def build_gateway(
    config: Path, *, access_log: str | None, access_log_buffer: int = 10_000
) -> tuple[Starlette, GatewayConfig]:
    """The gateway's app from ``config``, its state shared when it names a Redis, its
    access log to ``access_log`` (``None``: left as it is, for a check).

    Raises:
        LLMAgentOSError: the config (or the access log's target) is wrong.
    """
    from llmagentos.gateway.access_log import configure_access_log
    from llmagentos.gateway.app import gateway_app
    from llmagentos.gateway.config import load_gateway_config
    from llmagentos.gateway.openai_face import OpenAIFace
    from llmagentos.gateway.shared_state import share_state

    loaded = load_gateway_config(config)
    face = OpenAIFace(loaded.exposed) if loaded.exposed else None
    app = gateway_app(loaded.registry, face=face, **loaded.options)
    if loaded.redis_url is not None:
        share_state(app.state.gateway, loaded.redis_url)
    if access_log is not None:
        listener = configure_access_log(access_log, max_pending=access_log_buffer)
        if listener is not None:
            # Flushed when the app shuts down: uvicorn ends a SIGTERMed process itself.
            app.state.gateway.closers.append(listener.close)
    return app, loaded


def worker_app() -> Starlette:
    """One worker's app (uvicorn's factory, in each worker process)."""
    from llmagentos._heap import prepare_gc_for_serving
    from llmagentos.telemetry.setup import configure_from_env

    # uvicorn's own logging config would close the access log's handlers: plain lines.
    logging.basicConfig(format="%(levelname)s: %(name)s: %(message)s", level=logging.WARNING)
    app, _ = build_gateway(
        Path(os.environ[ENV_CONFIG]),
        access_log=os.environ.get(ENV_ACCESS_LOG, "-"),
        access_log_buffer=int(os.environ.get(ENV_ACCESS_LOG_BUFFER, "10000")),
    )
    configure_from_env("gateway")
    prepare_gc_for_serving()
    return app


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, but a stop closes the parent's copy of the socket first, so
    the port refuses new connections once the draining workers have closed theirs."""

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def run_workers(
    config: Path, workers: int, *, host: str, port: int, access_log: str,
    access_log_buffer: int, tls: dict[str, Any],
) -> None:  # fmt: skip
    """Serve ``config`` from ``workers`` processes on ``host:port`` until stopped."""
    import uvicorn

    from llmagentos.gateway.direct_path import GATEWAY_HTTP

    os.environ[ENV_CONFIG] = str(config.resolve())  # the workers inherit the environment
    os.environ[ENV_ACCESS_LOG] = access_log
    os.environ[ENV_ACCESS_LOG_BUFFER] = str(access_log_buffer)
    # The gateway is the edge: the client is the TCP peer, never X-Forwarded-For.
    settings = uvicorn.Config(
        _FACTORY, factory=True, workers=workers, host=host, port=port, log_level="warning",
        log_config=None, timeout_graceful_shutdown=10, proxy_headers=False, loop=EVENT_LOOP,
        http=GATEWAY_HTTP, access_log=False, **tls,
    )  # fmt: skip
    _Supervisor(settings, sockets=[settings.bind_socket()]).run()
