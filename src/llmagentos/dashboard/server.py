"""Serving the dashboard: where it may listen, and with what."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from llmagentos.exceptions import ConfigError

__all__ = ["check_bind", "serve_dashboard"]

_MIN_TOKEN = 16


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token.

    Raises:
        ConfigError: ``host`` is not a loopback address and there is no token (or it
            is shorter than 16 characters).
    """
    if token is not None and len(token) < _MIN_TOKEN:
        raise ConfigError("token", f"must be at least {_MIN_TOKEN} characters")
    if not _loopback(host) and token is None:
        raise ConfigError(
            "host",
            f"{host} is not a loopback address: the dashboard decides approvals, so bind "
            "beyond 127.0.0.1 only with a token (--token-env, or LLMAGENTOS_DASHBOARD_TOKEN)",
        )


def serve_dashboard(
    runs: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8600,
    token: str | None = None,
    gateway: Any = None,
    memory: Any = None,
) -> None:
    """Serve the dashboard until interrupted (see :func:`create_dashboard`)."""
    check_bind(host, token)
    from llmagentos.dashboard import create_dashboard

    app = create_dashboard(runs, token=token, gateway=gateway, memory=memory)
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None)
