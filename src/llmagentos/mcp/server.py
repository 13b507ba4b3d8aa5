"""A :class:`ToolRegistry` served as an MCP server, over stdio or streamable HTTP.

Every call goes through :meth:`ToolRegistry.run_call`, so an unknown tool, arguments of
the wrong type and a tool that raises all come back as an ``isError`` result the
client's model can read, never as a protocol error, and the server keeps serving.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from llmagentos._version import __version__
from llmagentos.llm.types import ToolCall
from llmagentos.mcp._sdk import require_sdk
from llmagentos.mcp.results import RESULT_SCHEMA, to_call_result
from llmagentos.tools.base import ToolRegistry

if TYPE_CHECKING:
    from mcp.server import Server, ServerRequestContext
    from mcp_types import (
        CallToolRequestParams,
        CallToolResult,
        ListToolsResult,
        PaginatedRequestParams,
    )

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PATH",
    "DEFAULT_PORT",
    "build_server",
    "serve_http",
    "serve_stdio",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_PATH = "/mcp"


def build_server(
    registry: ToolRegistry, *, name: str = "llmagentos", instructions: str | None = None
) -> Server[Any]:
    """The SDK's low-level :class:`mcp.server.Server`, answering with ``registry``'s tools.

    Tools are listed under their qualified names (``weather.forecast``) with the same
    JSON schema the registry sends a model.

    Raises:
        MissingExtraError: the ``mcp`` extra is not installed.
    """
    require_sdk("serving tools over MCP")
    from mcp.server import Server
    from mcp_types import ListToolsResult
    from mcp_types import Tool as ToolSpec

    async def list_tools(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        tools = [
            ToolSpec(
                name=spec.name,
                description=spec.description,
                input_schema=spec.parameters,
                output_schema=RESULT_SCHEMA,
            )
            for spec in registry.specs()
        ]
        return ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        arguments = json.dumps(params.arguments or {}, ensure_ascii=False)
        result = await registry.run_call(ToolCall(id="mcp", name=params.name, arguments=arguments))
        return to_call_result(result)

    def input_schema(tool_name: str) -> dict[str, Any] | None:
        return registry.get(tool_name).parameters if tool_name in registry else None

    return Server(
        name,
        version=__version__,
        instructions=instructions,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=input_schema,
    )


async def serve_stdio(registry: ToolRegistry, *, name: str = "llmagentos") -> None:
    """Serve ``registry`` on this process's stdin and stdout until stdin closes.

    The SDK points file descriptor 1 at stderr while serving, so a tool that prints
    cannot corrupt the protocol stream.
    """
    server = build_server(registry, name=name)
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def serve_http(
    registry: ToolRegistry,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    path: str = DEFAULT_PATH,
    name: str = "llmagentos",
    log_level: str = "warning",
) -> None:
    """Serve ``registry`` over streamable HTTP at ``http://host:port/path`` until stopped.

    On a loopback ``host`` the SDK also refuses requests whose ``Host`` or ``Origin``
    header names another site (DNS-rebinding protection).
    """
    server = build_server(registry, name=name)
    import uvicorn

    app = server.streamable_http_app(streamable_http_path=path, host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level)
    await uvicorn.Server(config).serve()
