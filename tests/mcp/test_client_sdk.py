"""Our client against the SDK's own MCPServer, run as a subprocess over stdio and HTTP.

One connection per transport serves the whole module. It is opened with plain ``with``,
so its session lives on a helper thread's loop and every test's own loop reaches it
through the hand-over that ``tool.call()`` from sync code relies on.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest

from llmagentos.llm.types import ToolCall
from llmagentos.mcp import HttpServer, MCPConnection, MCPTool, ServerParams, StdioServer
from llmagentos.tools.base import ToolRegistry
from tests.mcp.conftest import SDK_SERVER, sdk_stdio

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=["stdio", "http"])
def sdk(request: pytest.FixtureRequest) -> Iterator[MCPConnection]:
    server: ServerParams = (
        sdk_stdio()
        if request.param == "stdio"
        else HttpServer(request.getfixturevalue("sdk_http_url"))
    )
    with MCPConnection(server, namespace="sdk", timeout=20, connect_timeout=30) as conn:
        yield conn


async def test_lists_the_tools_with_their_schemas(sdk: MCPConnection) -> None:
    assert sdk.server_name == "sdk-fixture"
    assert sdk.protocol_version
    names = [tool.remote_name for tool in sdk.tools]
    assert names == ["add", "describe", "shout", "refuse", "nap", "header", "die"]
    add = sdk.tool("add")
    assert isinstance(add, MCPTool)
    assert add.qualified_name == "sdk.add"
    assert add.description == "Add two integers."
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert set(add.parameters["required"]) == {"a", "b"}
    assert add.spec.name == "sdk.add"


async def test_calls_return_plain_values(sdk: MCPConnection) -> None:
    add = await sdk.tool("add").acall({"a": 2, "b": 40})
    assert add.ok and add.value == 42  # unwrapped from the SDK's {"result": 42}
    assert add.name == "sdk.add"
    text = await sdk.tool("shout").acall('{"text": "quiet"}')  # JSON text, as models send it
    assert text.ok and text.value == "QUIET"
    info = await sdk.tool("describe").acall({"name": "mcp", "tags": ["x"]})
    assert info.ok and info.value == {"name": "mcp", "length": 3, "tags": ["x"]}


async def test_wrong_argument_type_names_the_field(sdk: MCPConnection) -> None:
    result = await sdk.tool("add").acall({"a": "two", "b": 1})
    assert not result.ok
    assert result.error is not None and result.error.startswith("arguments invalid: a:")
    missing = await sdk.tool("add").acall({"a": 1})
    assert not missing.ok and "'b' is a required property" in (missing.error or "")


async def test_server_side_rejection_is_an_error_result(sdk: MCPConnection) -> None:
    # connection.call skips our schema check, so the server's own validation answers.
    result = await sdk.call("add", {"a": "two", "b": 1})
    assert not result.ok and "validation error" in (result.error or "")


async def test_tool_errors_and_unknown_tools_are_results(sdk: MCPConnection) -> None:
    refused = await sdk.tool("refuse").acall({"reason": "no thanks"})
    assert not refused.ok and (refused.error or "").endswith("refused: no thanks")
    unknown = await sdk.call("no_such_tool", {})
    assert not unknown.ok and "no_such_tool" in (unknown.error or "")
    again = await sdk.tool("add").acall({"a": 1, "b": 1})
    assert again.ok and again.value == 2  # the session survived both


async def test_timeout_is_a_result_and_the_session_goes_on(sdk: MCPConnection) -> None:
    slow = await sdk.tool("nap").acall({"seconds": 5}, timeout=0.3)
    assert not slow.ok and slow.error == "timed out after 0.3 s"
    fine = await sdk.tool("nap").acall({"seconds": 0.01})
    assert fine.ok and fine.value == "slept 0.01"


async def test_registry_runs_mcp_tools_in_parallel(sdk: MCPConnection) -> None:
    registry = ToolRegistry()
    sdk.register(registry)
    assert "sdk.add" in registry and "sdk.nap" in registry
    calls = [ToolCall(id=str(i), name="sdk.nap", arguments='{"seconds": 0.5}') for i in range(4)]
    start = asyncio.get_running_loop().time()
    results = await registry.run_calls(calls)
    elapsed = asyncio.get_running_loop().time() - start
    assert [r.value for r in results] == ["slept 0.5"] * 4
    assert elapsed < 1.8, f"4 x 0.5 s calls took {elapsed:.2f} s: not run in parallel"


def test_sync_call_from_plain_code(sdk: MCPConnection) -> None:
    result = sdk.tool("add").call({"a": 1, "b": 2})
    assert result.ok and result.value == 3


async def test_http_headers_reach_the_server(sdk_http_url: str) -> None:
    server = HttpServer(sdk_http_url, headers={"X-Llmagentos-Test": "yes"})
    async with MCPConnection(server) as connection:
        result = await connection.call("header", {"name": "X-Llmagentos-Test"})
    assert result.ok and result.value == "yes"


async def test_stdio_cwd_is_the_servers_working_directory() -> None:
    server = StdioServer(sys.executable, (SDK_SERVER.name,), cwd=SDK_SERVER.parent)
    async with MCPConnection(server) as connection:
        result = await connection.call("add", {"a": 1, "b": 1})
    assert result.ok and result.value == 2
