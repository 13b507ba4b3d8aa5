"""Model Context Protocol: use MCP servers' tools, and serve llmagentos tools over MCP.

Needs the ``llmagentos[mcp]`` extra (the official ``mcp`` SDK), imported only when a
connection opens or a server is built; without it those raise ``MissingExtraError``.

- :class:`MCPConnection` opens a session with a server (:class:`StdioServer` command or
  :class:`HttpServer` URL), lists its tools as :class:`MCPTool` objects that a
  :class:`~llmagentos.tools.base.ToolRegistry` holds next to ``@tool`` functions.
- :func:`build_server`, :func:`serve_stdio` and :func:`serve_http` expose a registry.
"""

from llmagentos.mcp.client import MCPConnection
from llmagentos.mcp.params import HttpServer, ServerParams, StdioServer
from llmagentos.mcp.results import from_call_result, to_call_result
from llmagentos.mcp.server import build_server, serve_http, serve_stdio
from llmagentos.mcp.tool import MCPTool

__all__ = [
    "HttpServer",
    "MCPConnection",
    "MCPTool",
    "ServerParams",
    "StdioServer",
    "build_server",
    "from_call_result",
    "serve_http",
    "serve_stdio",
    "to_call_result",
]
