"""Our server (``llmagentos mcp serve``) driven by the SDK's own client, over stdio and HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult

from tests.mcp.conftest import OUR_TOOLS
from tests.mcp.servers.our_tools import registry

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def sdk_client(transport: str, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    server: StdioServerParameters | str
    if transport == "stdio":
        argv = ["-m", "llmagentos", "mcp", "serve", "--tools", OUR_TOOLS]
        server = StdioServerParameters(command=sys.executable, args=argv)
    else:
        server = request.getfixturevalue("our_http_url")
    async with Client(server, read_timeout_seconds=20) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_lists_the_registry_with_its_schemas(
    transport: str, request: pytest.FixtureRequest
) -> None:
    async with sdk_client(transport, request) as client:
        assert client.server_info is not None and client.server_info.name == "llmagentos"
        listed = (await client.list_tools()).tools
    assert [tool.name for tool in listed] == registry.names()
    for tool in listed:
        ours = registry.get(tool.name)
        assert tool.input_schema == ours.parameters
        assert tool.description == ours.description
    add = next(tool for tool in listed if tool.name == "add")
    assert add.input_schema["properties"]["a"] == {"type": "integer", "description": "the first."}
    assert "text.upper" in [tool.name for tool in listed]


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_calls_errors_and_survival(transport: str, request: pytest.FixtureRequest) -> None:
    async with sdk_client(transport, request) as client:
        await client.list_tools()

        async def call(name: str, arguments: dict[str, Any]) -> CallToolResult:
            return await client.call_tool(name, arguments)

        added = await call("add", {"a": 2, "b": 3})
        assert not added.is_error
        assert added.structured_content == {"result": 5} and text_of(added) == "5"

        greeted = await call("greet", {"name": "Ada", "excited": True})  # the async tool
        assert not greeted.is_error and text_of(greeted) == "Hello, Ada!"

        summary = await call("stats", {"values": [1, 2, 3]})
        assert json.loads(text_of(summary)) == {"count": 3, "total": 6.0, "mean": 2.0}

        wrong = await call("add", {"a": "two", "b": 3})
        assert wrong.is_error
        assert text_of(wrong).startswith("arguments invalid: a: Input should be a valid integer")

        unknown = await call("ad", {})
        assert unknown.is_error and text_of(unknown) == "unknown tool 'ad'; did you mean 'add'?"

        raised = await call("explode", {"message": "kaboom"})
        assert raised.is_error and text_of(raised) == "ValueError: kaboom"

        after = await call("text.upper", {"text": "still here"})
        assert not after.is_error and text_of(after) == "STILL HERE"

        parallel = await asyncio.gather(*(call("add", {"a": i, "b": i}) for i in range(5)))
        assert [r.structured_content for r in parallel] == [{"result": 2 * i} for i in range(5)]
