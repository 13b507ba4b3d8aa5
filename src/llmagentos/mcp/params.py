"""How to reach an MCP server: a command to run (stdio) or a URL (streamable HTTP)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["HttpServer", "ServerParams", "StdioServer"]


@dataclass(frozen=True)
class StdioServer:
    """A server started as a subprocess that speaks MCP on its stdin and stdout.

    Attributes:
        command: the executable (looked up on ``PATH``).
        args: its arguments.
        env: variables added to the SDK's safe default environment (``PATH``, ``HOME``, ...).
        cwd: the working directory, or ``None`` for ours.
    """

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    cwd: str | Path | None = None

    def __str__(self) -> str:
        return shlex.join([self.command, *self.args])


@dataclass(frozen=True)
class HttpServer:
    """A server reached over MCP's streamable HTTP transport.

    Attributes:
        url: the endpoint, e.g. ``http://127.0.0.1:8000/mcp``.
        headers: sent with every request (an ``Authorization`` header, say).
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        # Error messages reach models and logs: leave out credentials and query tokens.
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            port = ""
        return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


ServerParams = StdioServer | HttpServer
