"""A connection to one MCP server: its tools as :class:`MCPTool` objects, and calls to them.

The SDK's session lives in one task on one event loop: it is entered and left there
(anyio requires that), and calls made from any other loop or thread are handed over
to that loop. So the same connection serves ``async with``, plain ``with`` (a private
loop on a helper thread), and tools called through ``ToolRegistry.run_calls`` or
``tool.call()`` from sync code.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from llmagentos._version import __version__
from llmagentos.exceptions import MCPConnectionError, MCPError, RegistryError
from llmagentos.mcp._sdk import require_sdk
from llmagentos.mcp.params import HttpServer, ServerParams, StdioServer
from llmagentos.mcp.results import from_call_result
from llmagentos.mcp.tool import MCPTool, local_name
from llmagentos.tools.base import ToolRegistry, ToolResult

if TYPE_CHECKING:
    from mcp import Client
    from mcp.client._transport import Transport
    from mcp_types import CallToolResult
    from mcp_types import Tool as ToolSpec

__all__ = ["MCPConnection"]

T = TypeVar("T")

_MAX_PAGES = 100  # a server whose tool list never ends must not hang the connect
_CLOSE_TIMEOUT = 10.0


def _reason(err: BaseException) -> str:
    """One line for an error, looking inside the exception groups anyio raises."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    text = str(err) or type(err).__name__
    return text if text.startswith(type(err).__name__) else f"{type(err).__name__}: {text}"


def _file_with_fd(stream: TextIO) -> TextIO:
    """``stream``, or the real stderr when it has no file descriptor a child can inherit.

    A captured ``sys.stderr`` (pytest's, a notebook's) is an in-memory object.
    """
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):
        return sys.__stderr__ or stream
    return stream


class MCPConnection:
    """An open session with an MCP server over stdio or streamable HTTP.

    Example::

        async with MCPConnection(StdioServer("npx", ("-y", "some-server")), namespace="fs") as fs:
            fs.register(registry)            # every server tool, as fs.<name>
            result = await fs.call("read_file", {"path": "README.md"})

    Attributes:
        server: how the server is reached.
        namespace: the namespace its tools are registered under, or ``None``.
        timeout: the default seconds one call may take (``None``: no limit).
        tools: the server's tools, listed when the connection opened.
    """

    def __init__(
        self,
        server: ServerParams,
        *,
        namespace: str | None = None,
        timeout: float | None = 60.0,
        connect_timeout: float = 30.0,
        errlog: TextIO | None = None,
    ) -> None:
        self.server = server
        self.namespace = namespace
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.errlog = errlog
        self.tools: list[MCPTool] = []
        self.server_name = ""
        self.protocol_version = ""
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lost: str | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"MCPConnection({str(self.server)!r}, tools={len(self.tools)})"

    @property
    def connected(self) -> bool:
        """Whether calls can be made: opened, not closed, connection not lost."""
        return self._client is not None and self._lost is None

    # -- opening and closing -------------------------------------------------------------

    async def __aenter__(self) -> MCPConnection:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._close()

    def __enter__(self) -> MCPConnection:
        """Open on a private event loop in a helper thread, for synchronous code."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="llmagentos-mcp", daemon=True)
        thread.start()
        self._thread = thread
        try:
            asyncio.run_coroutine_threadsafe(self._open(), loop).result()
        except BaseException:
            self._stop_thread(loop)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(_CLOSE_TIMEOUT + 5)
        self._stop_thread(loop)

    def _stop_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(_CLOSE_TIMEOUT)
            self._thread = None
        if not loop.is_running():
            loop.close()

    async def _open(self) -> None:
        require_sdk("an MCP connection")
        if self._runner is not None:
            raise MCPError(str(self.server), "this connection was already opened")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        ready: asyncio.Future[None] = loop.create_future()
        self._runner = loop.create_task(self._run(ready), name=f"mcp {self.server}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout)
        except TimeoutError:
            await self._cancel_runner()
            raise MCPConnectionError(
                str(self.server), f"no MCP handshake within {self.connect_timeout:g} s"
            ) from None
        except BaseException:
            await self._cancel_runner()
            raise

    async def _run(self, ready: asyncio.Future[None]) -> None:
        """Hold the SDK session open until :meth:`_close`; the one task that owns it."""
        from mcp import Client
        from mcp_types import Implementation

        assert self._stop is not None
        try:
            async with AsyncExitStack() as stack:
                transport = await self._transport(stack)
                client = Client(
                    transport, client_info=Implementation(name="llmagentos", version=__version__)
                )
                await stack.enter_async_context(client)
                info = client.server_info
                self.server_name = info.name if info is not None else ""
                self.protocol_version = client.protocol_version
                self._client = client
                self.tools = self._wrap(await self._list(client))
                ready.set_result(None)
                await self._stop.wait()
        except Exception as err:
            if not ready.done():
                error = MCPConnectionError(str(self.server), f"cannot connect: {_reason(err)}")
                ready.set_exception(error)
            else:
                self._lost = f"connection lost: {_reason(err)}"
        finally:
            self._client = None
            if self._lost is None:
                self._lost = "the connection is closed"

    async def _transport(self, stack: AsyncExitStack) -> Transport:
        server = self.server
        if isinstance(server, StdioServer):
            from mcp.client.stdio import StdioServerParameters, stdio_client

            try:
                params = StdioServerParameters(
                    command=server.command,
                    args=list(server.args),
                    env=None if server.env is None else dict(server.env),
                    cwd=server.cwd,
                )
            except ValueError as err:
                raise MCPConnectionError(str(server), f"bad parameters: {err}") from err
            # The server's stderr is its log: pass it through unless told where to put it.
            return stdio_client(params, errlog=_file_with_fd(self.errlog or sys.stderr))
        assert isinstance(server, HttpServer)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        # The SDK's own defaults: a short connect, a long read for held-open event streams.
        http = httpx2.AsyncClient(
            headers=dict(server.headers), timeout=httpx2.Timeout(30.0, read=300.0)
        )
        await stack.enter_async_context(http)
        return streamable_http_client(server.url, http_client=http)

    async def _list(self, client: Client) -> list[ToolSpec]:
        specs: list[ToolSpec] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            specs.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return specs

    def _wrap(self, specs: list[ToolSpec]) -> list[MCPTool]:
        tools: list[MCPTool] = []
        taken: set[str] = set()
        for spec in specs:
            tool = MCPTool(
                self,
                remote_name=spec.name,
                description=spec.description or spec.title or "",
                input_schema=spec.input_schema,
                output_schema=spec.output_schema,
                namespace=self.namespace,
                timeout=self.timeout,
            )
            if tool.name in taken:  # two remote names sanitised alike: keep both, apart
                tool.name = local_name(spec.name, len(tool.name), hashed=True)
            taken.add(tool.name)
            tools.append(tool)
        return tools

    async def _close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        runner = self._runner
        if runner is not None and not runner.done():
            try:
                await asyncio.wait_for(asyncio.shield(runner), _CLOSE_TIMEOUT)
            except TimeoutError:
                await self._cancel_runner()
        self._lost = self._lost or "the connection is closed"

    async def _cancel_runner(self) -> None:
        runner = self._runner
        if runner is None or runner.done():
            return
        runner.cancel()
        with contextlib.suppress(BaseException):
            await runner

    # -- using the tools -----------------------------------------------------------------

    def tool(self, name: str) -> MCPTool:
        """The tool called ``name`` on the server (or by its registry-safe name).

        Raises:
            RegistryError: the server has no such tool; lists the close matches.
        """
        for tool in self.tools:
            if name in (tool.remote_name, tool.name):
                return tool
        names = [tool.remote_name for tool in self.tools]
        import difflib

        raise RegistryError("MCP tool", name, difflib.get_close_matches(name, names, n=3))

    def register(self, registry: ToolRegistry, *, namespace: str | None = None) -> list[MCPTool]:
        """Add every tool of the server to ``registry``.

        ``namespace`` overrides the connection's. Returns the tools.

        Raises:
            ToolDefinitionError: a name is already taken in the registry.
        """
        for tool in self.tools:
            registry.add(tool, namespace=namespace)
        return list(self.tools)

    async def refresh(self) -> list[MCPTool]:
        """List the server's tools again (after it says the list changed)."""
        client = self._require()
        self.tools = self._wrap(await self._on_loop(self._list(client)))
        return list(self.tools)

    async def call(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        label: str | None = None,
    ) -> ToolResult:
        """Call the server's tool ``name``; the result is labelled ``label`` (default ``name``).

        Never raises: an unknown tool, a tool error, a protocol error, a timeout and a
        lost connection all come back as ``ToolResult(ok=False, error=...)``.
        """
        label = label or name
        start = time.perf_counter()

        def fail(message: str) -> ToolResult:
            return ToolResult(
                ok=False, error=message, seconds=time.perf_counter() - start, name=label
            )

        limit = self.timeout if timeout is None else timeout
        try:
            client = self._require()
            result = await asyncio.wait_for(
                self._on_loop(self._call(client, name, arguments or {}, limit)), limit
            )
        except TimeoutError:
            return fail(f"timed out after {limit:g} s")
        except Exception as err:
            return fail(_reason(err))
        output_schema = next((t.output_schema for t in self.tools if t.remote_name == name), None)
        return from_call_result(
            result,
            name=label,
            seconds=time.perf_counter() - start,
            output_schema=output_schema,
        )

    async def _call(
        self, client: Client, name: str, arguments: dict[str, Any], limit: float | None
    ) -> CallToolResult:
        from mcp import MCPError as SDKError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        try:
            return await client.call_tool(name, arguments, read_timeout_seconds=limit)
        except SDKError as err:
            if err.code == CONNECTION_CLOSED:
                self._lost = f"connection lost: {err.message}"
                raise MCPConnectionError(str(self.server), self._lost) from err
            if err.code == REQUEST_TIMEOUT:
                raise TimeoutError(err.message) from err
            raise MCPError(str(self.server), f"error {err.code}: {err.message}") from err

    def _require(self) -> Client:
        if self._lost is not None or self._client is None:
            reason = self._lost or "the connection is not open (use 'async with' or 'with')"
            raise MCPConnectionError(str(self.server), reason)
        return self._client

    async def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` on the session's loop, from whichever loop calls."""
        loop = self._loop
        if loop is None or loop.is_closed():
            work.close()
            raise MCPConnectionError(str(self.server), "the connection is closed")
        if asyncio.get_running_loop() is loop:
            return await work
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop))
