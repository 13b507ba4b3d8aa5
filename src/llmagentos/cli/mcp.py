"""``llmagentos mcp``: serve llmagentos tools over MCP, list an MCP server's tools."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import socket
import sys
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llmagentos.cli._common import EXIT_INTERRUPTED, fail, show_help_without_command, stdout
from llmagentos.exceptions import LLMAgentOSError, MissingExtraError
from llmagentos.tools.base import BaseTool, ToolRegistry

__all__ = ["load_tools", "mcp_app"]

mcp_app = typer.Typer(
    help="Model Context Protocol: serve llmagentos tools, list an MCP server's tools.",
    add_completion=False,
)


@mcp_app.callback(invoke_without_command=True)
def _group(context: typer.Context) -> None:
    show_help_without_command(context)


class Transport(StrEnum):
    stdio = "stdio"
    http = "http"


def _import(module_name: str) -> ModuleType:
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"no such file {module_name!r}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {module_name!r} as a module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    # Like uvicorn's app strings: modules of the current directory are importable.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    return importlib.import_module(module_name)


def load_tools(spec: str) -> ToolRegistry:
    """The registry ``MODULE:ATTR`` (or ``path/file.py:ATTR``) names; exits 2 when it cannot.

    ``ATTR`` may be a :class:`ToolRegistry`, one tool, or a list of tools and functions.
    """
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        fail(f"--tools {spec!r} must be MODULE:ATTR or path/to/file.py:ATTR")
    try:
        # On stdio, stdout is the protocol channel: an import that prints must not reach it.
        with contextlib.redirect_stdout(sys.stderr):
            module = _import(module_name)
    except Exception as err:
        fail(f"--tools: cannot import {module_name!r}: {type(err).__name__}: {err}")
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            fail(f"--tools: {module_name!r} has no attribute {attr!r}")
        value = getattr(value, part)
    if isinstance(value, ToolRegistry):
        return value
    try:
        if isinstance(value, BaseTool):
            return ToolRegistry([value])
        if isinstance(value, list | tuple) and value and all(callable(v) for v in value):
            return ToolRegistry(value)
    except LLMAgentOSError as err:
        fail(f"--tools {spec!r}: {err}")
    fail(f"--tools {spec!r} is a {type(value).__name__}, not a ToolRegistry, a tool or a list")


def _check_port(host: str, port: int) -> None:
    """Fail with one line now, rather than with a server log later, when the port is taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}")


@mcp_app.command("serve")
def serve(
    *,
    tools: Annotated[
        str,
        typer.Option(
            "--tools",
            help="MODULE:ATTR or path/to/file.py:ATTR: a ToolRegistry, a tool or a list of them.",
            show_default=False,
        ),
    ],
    transport: Annotated[
        Transport, typer.Option("--transport", help="stdio, or streamable HTTP.")
    ] = Transport.stdio,
    host: Annotated[str, typer.Option("--host", help="HTTP: the address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="HTTP: the port.")] = 8000,
    path: Annotated[str, typer.Option("--path", help="HTTP: the endpoint path.")] = "/mcp",
    name: Annotated[str, typer.Option("--name", help="The server name clients see.")] = (
        "llmagentos"
    ),
) -> None:
    """Serve llmagentos tools as an MCP server (stdio by default)."""
    from llmagentos.mcp.server import serve_http, serve_stdio

    registry = load_tools(tools)
    try:
        if transport is Transport.http:
            _check_port(host, port)
            typer.echo(
                f"serving {len(registry)} tools at http://{host}:{port}{path} (Ctrl-C stops)",
                err=True,
            )
            asyncio.run(serve_http(registry, host=host, port=port, path=path, name=name))
        else:
            asyncio.run(serve_stdio(registry, name=name))
    except MissingExtraError as err:
        fail(err)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _arguments(schema: dict[str, Any]) -> str:
    """``city*: string, days: integer`` (``*`` marks the required ones)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return "-"
    required = set(schema.get("required") or ())
    parts = []
    for key, prop in properties.items():
        kind = prop.get("type", "any") if isinstance(prop, dict) else "any"
        kind = "|".join(map(str, kind)) if isinstance(kind, list) else str(kind)
        parts.append(f"{key}{'*' if key in required else ''}: {kind}")
    return ", ".join(parts) or "-"


@mcp_app.command(
    "tools",
    context_settings={"allow_interspersed_args": False},
)
def list_tools(
    command: Annotated[
        list[str] | None,
        typer.Argument(
            help="The stdio server's command and arguments (after --).", show_default=False
        ),
    ] = None,
    *,
    url: Annotated[
        str | None, typer.Option("--url", help="A streamable HTTP server's endpoint.")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="HTTP header 'Name: value'.")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Stdio: KEY=VALUE for the server.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the handshake.")
    ] = 30.0,
) -> None:
    """List the tools of an MCP server: `llmagentos mcp tools -- npx -y SERVER` or `--url URL`."""
    from llmagentos.exceptions import MCPError
    from llmagentos.mcp import HttpServer, MCPConnection, StdioServer

    server: StdioServer | HttpServer
    if bool(command) == bool(url):
        fail("give either a server command (after --) or --url, not both")
    if url:
        headers = {}
        for item in header or ():
            key, sep, value = item.partition(":")
            if not sep or not key.strip():
                fail(f"--header {item!r} must be 'Name: value'")
            headers[key.strip()] = value.strip()
        server = HttpServer(url, headers)
    else:
        assert command
        variables = {}
        for item in env or ():
            key, sep, value = item.partition("=")
            if not sep or not key:
                fail(f"--env {item!r} must be KEY=VALUE")
            variables[key] = value
        server = StdioServer(command[0], tuple(command[1:]), env=variables or None)
    try:
        with MCPConnection(server, connect_timeout=timeout) as connection:
            title = f"{connection.server_name or server} (MCP {connection.protocol_version})"
            tools = list(connection.tools)
    except (MCPError, MissingExtraError) as err:
        fail(err)
    table = Table(title=escape(title))
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    table.add_column("arguments (* required)")
    for tool in tools:
        table.add_row(
            escape(tool.remote_name), escape(tool.description), escape(_arguments(tool.parameters))
        )
    stdout().print(table)
