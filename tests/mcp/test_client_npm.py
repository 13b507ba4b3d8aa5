"""Our client against the npm reference server ``@modelcontextprotocol/server-everything``.

A different SDK (TypeScript) on the other end, and an older protocol version, so the
connection negotiates down from the Python SDK's newest one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from llmagentos.llm.types import ToolCall
from llmagentos.mcp import MCPConnection, StdioServer
from llmagentos.tools.base import ToolRegistry

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def npm(everything: StdioServer) -> Iterator[MCPConnection]:
    with MCPConnection(everything, namespace="ev", timeout=20, connect_timeout=30) as connection:
        yield connection


def test_lists_the_reference_tools(npm: MCPConnection) -> None:
    assert npm.server_name == "mcp-servers/everything"
    names = {tool.remote_name for tool in npm.tools}
    assert {"echo", "get-sum", "get-structured-content", "get-tiny-image"} <= names
    get_sum = npm.tool("get-sum")
    assert get_sum.qualified_name == "ev.get-sum"
    assert get_sum.parameters["properties"]["a"]["type"] == "number"
    assert "$schema" not in get_sum.parameters  # kept in input_schema, not sent to models
    assert get_sum.input_schema["$schema"].startswith("http://json-schema.org/")


async def test_text_structured_and_image_results(npm: MCPConnection) -> None:
    echo = await npm.tool("echo").acall({"message": "hi"})
    assert echo.ok and echo.value == "Echo: hi"
    total = await npm.tool("get-sum").acall({"a": 2, "b": 3.5})
    assert total.ok and "5.5" in total.value
    weather = await npm.tool("get-structured-content").acall({"location": "Chicago"})
    assert weather.ok and set(weather.value) == {"temperature", "conditions", "humidity"}
    image = await npm.tool("get-tiny-image").acall({})
    assert image.ok and isinstance(image.value, list)
    kinds = [block["type"] if isinstance(block, dict) else "text" for block in image.value]
    assert "image" in kinds
    picture = next(b for b in image.value if isinstance(b, dict) and b["type"] == "image")
    assert picture["mimeType"] == "image/png" and picture["data"]


async def test_bad_input_is_a_result(npm: MCPConnection) -> None:
    registry = ToolRegistry()
    npm.register(registry)
    wrong, unknown, server_side, enum = await registry.run_calls(
        [
            ToolCall(id="1", name="ev.get-sum", arguments='{"a": "2", "b": 3}'),
            ToolCall(id="2", name="ev.get_sum", arguments='{"a": 2, "b": 3}'),
            ToolCall(id="3", name="ev.echo", arguments='{"message": "fine"}'),
            ToolCall(id="4", name="ev.get-structured-content", arguments='{"location": "Oslo"}'),
        ]
    )
    assert not wrong.ok and (wrong.error or "").startswith("arguments invalid: a: '2' is not")
    assert not unknown.ok and "did you mean 'ev.get-sum'" in (unknown.error or "")
    assert server_side.ok and server_side.value == "Echo: fine"
    assert not enum.ok and "location" in (enum.error or "")
    # The server's own validation, when ours is skipped: an isError result, not a crash.
    raw = await npm.call("get-sum", {"a": "2"})
    assert not raw.ok and raw.error
    assert json.loads(raw.content())["ok"] is False
    still = await npm.call("echo", {"message": "alive"})
    assert still.ok and still.value == "Echo: alive"


async def test_env_reaches_the_server_and_our_secrets_do_not(
    everything: StdioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMAGENTOS_TEST_SECRET", "do-not-leak")
    server = StdioServer(everything.command, everything.args, env={"LLMAGENTOS_MCP_ENV": "given"})
    async with MCPConnection(server) as connection:
        result = await connection.call("get-env")
    assert result.ok
    text = json.dumps(result.value)
    assert "LLMAGENTOS_MCP_ENV" in text and "given" in text
    assert "do-not-leak" not in text
