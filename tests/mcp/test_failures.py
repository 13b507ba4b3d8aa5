"""Servers that die, never answer, or cannot be reached: typed errors, never a hang."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from llmagentos.exceptions import MCPConnectionError, MissingExtraError
from llmagentos.llm.types import ToolCall
from llmagentos.mcp import HttpServer, MCPConnection, StdioServer
from llmagentos.tools.base import ToolRegistry
from tests.mcp.conftest import OUR_TOOLS, free_port, http_process, our_stdio, sdk_stdio

pytestmark = pytest.mark.timeout(60)


async def test_server_exits_mid_call() -> None:
    async with MCPConnection(sdk_stdio(), timeout=20) as connection:
        assert (await connection.call("add", {"a": 1, "b": 1})).value == 2
        start = time.monotonic()
        dying = await connection.call("die")
        assert not dying.ok and "connection lost" in (dying.error or "")
        after = await connection.tool("add").acall({"a": 1, "b": 1})
        assert not after.ok
        assert (after.error or "").startswith("MCPConnectionError: MCP server ")
        assert time.monotonic() - start < 10
        assert not connection.connected


async def test_server_killed_between_calls_stdio() -> None:
    registry = ToolRegistry()
    async with MCPConnection(our_stdio(), namespace="our", timeout=20) as connection:
        connection.register(registry)
        pid = (await registry.run_call(ToolCall(id="1", name="our.pid"))).value
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        result = await registry.run_call(
            ToolCall(id="2", name="our.add", arguments='{"a": 1, "b": 2}')
        )
        assert not result.ok and "MCPConnectionError" in (result.error or "")
        assert time.monotonic() - start < 10


async def test_server_killed_between_calls_http(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "llmagentos", "mcp", "serve", "--tools", OUR_TOOLS]
    argv += ["--transport", "http", "--port", str(port)]
    with http_process(argv, port, tmp_path / "server.log") as process:
        url = f"http://127.0.0.1:{port}/mcp"
        async with MCPConnection(HttpServer(url), timeout=5) as connection:
            assert (await connection.call("add", {"a": 1, "b": 2})).value == 3
            process.kill()
            process.wait(5)
            start = time.monotonic()
            result = await connection.call("add", {"a": 1, "b": 2})
            assert not result.ok and "MCPConnectionError" in (result.error or "")
            assert time.monotonic() - start < 6


async def test_unreachable_url_raises_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    start = time.monotonic()
    with pytest.raises(MCPConnectionError, match=r"cannot connect") as caught:
        async with MCPConnection(HttpServer(url), connect_timeout=10):
            pass
    assert caught.value.server == url
    assert time.monotonic() - start < 10


async def test_missing_command_raises_connection_error() -> None:
    with pytest.raises(MCPConnectionError, match=r"no-such-mcp-server.*cannot connect"):
        async with MCPConnection(StdioServer("no-such-mcp-server-command"), connect_timeout=10):
            pass


async def test_silent_server_times_out_the_handshake() -> None:
    silent = StdioServer(sys.executable, ("-c", "import time; time.sleep(60)"))
    start = time.monotonic()
    with pytest.raises(MCPConnectionError, match=r"no MCP handshake within 1 s"):
        async with MCPConnection(silent, connect_timeout=1):
            pass
    assert time.monotonic() - start < 15


async def test_calls_after_close_are_error_results() -> None:
    connection = MCPConnection(sdk_stdio())
    async with connection:
        add = connection.tool("add")
    result = await add.acall({"a": 1, "b": 2})
    assert not result.ok and "the connection is closed" in (result.error or "")
    never_opened = await MCPConnection(sdk_stdio()).call("add", {"a": 1, "b": 2})
    assert not never_opened.ok and "not open" in (never_opened.error or "")


def test_sync_connect_failure_raises_and_leaves_no_thread() -> None:
    before = threading.active_count()
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with pytest.raises(MCPConnectionError), MCPConnection(HttpServer(url), connect_timeout=10):
        pass
    assert threading.active_count() == before


async def test_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # what an uninstalled SDK looks like
    with pytest.raises(MissingExtraError, match=r"pip install 'llmagentos\[mcp\]'"):
        async with MCPConnection(sdk_stdio()):
            pass
    from llmagentos.mcp import build_server

    with pytest.raises(MissingExtraError, match="serving tools over MCP"):
        build_server(ToolRegistry())
