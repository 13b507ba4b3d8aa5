"""The local dashboard: runs, their steps explained, the kernel, memory and the gateway.

``llmagentos dashboard [RUNS_DIR]`` serves it on 127.0.0.1; see docs/dashboard.md.
Needs ``llmagentos[dashboard]`` (Starlette, Jinja2, Plotly, uvicorn).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmagentos.dashboard.server import check_bind, serve_dashboard
from llmagentos.exceptions import MissingExtraError

if TYPE_CHECKING:
    from llmagentos.dashboard.app import Dashboard

__all__ = ["check_bind", "create_dashboard", "serve_dashboard"]


def create_dashboard(
    runs: str | Path, *, token: str | None = None, gateway: Any = None, memory: Any = None
) -> Dashboard:
    """The dashboard's ASGI app (see :func:`llmagentos.dashboard.app.create_dashboard`).

    Raises:
        MissingExtraError: ``llmagentos[dashboard]`` is not installed.
    """
    for module, package in (("starlette", "starlette"), ("jinja2", "jinja2"),
                            ("plotly", "plotly"), ("uvicorn", "uvicorn")):  # fmt: skip
        try:
            __import__(module)
        except ImportError as err:
            raise MissingExtraError("the dashboard", "dashboard", package) from err
    from llmagentos.dashboard.app import create_dashboard as create

    return create(runs, token=token, gateway=gateway, memory=memory)
