"""A test MCP server built with the SDK's own MCPServer (v1's FastMCP), not with our code.

Run: ``python sdk_server.py`` (stdio) or ``python sdk_server.py http PORT``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("sdk-fixture", log_level="ERROR")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def describe(name: str, tags: list[str] | None = None) -> dict[str, Any]:
    """Describe a name."""
    return {"name": name, "length": len(name), "tags": tags or []}


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@server.tool()
def refuse(reason: str) -> str:
    """Always fails, with ``reason`` as the error."""
    raise ToolError(f"refused: {reason}")


@server.tool()
async def nap(seconds: float) -> str:
    """Sleep, then say so."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of one HTTP request header ("" on stdio or when absent)."""
    return (ctx.headers or {}).get(name.lower(), "")


@server.tool()
def die() -> str:
    """End the server process at once, mid-call."""
    os._exit(3)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
