"""The tool pool: hung sync tools cannot starve other tools, DNS lookups or the runtime."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmagentos._blocking import run_blocking
from llmagentos.exceptions import ConfigError
from llmagentos.llm.types import ToolCall
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.http import http_tool
from llmagentos.tools.pool import ToolPool, default_tool_pool

# More than asyncio's default executor ever has (min(32, cores + 4)), so hung calls
# there would leave no thread for anyone.
HUNG = 40
PROMPTLY = 10.0  # a generous bound for calls that should not wait at all


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def loopback() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # every hung thread ends with its test


def _registry(release: threading.Event, pool: ToolPool) -> ToolRegistry:
    @tool(timeout=0.2)
    def hang() -> str:
        """Block until released."""
        release.wait()
        return "released"

    @tool
    def fast_sync(x: int) -> int:
        """Double x."""
        return 2 * x

    @tool
    async def fast_async(x: int) -> int:
        """Triple x."""
        return 3 * x

    return ToolRegistry(
        [hang, fast_sync, fast_async, http_tool(allow_hosts=["localhost"])], pool=pool
    )


def _call(name: str, **arguments: object) -> ToolCall:
    import json

    return ToolCall(id="c", name=name, arguments=json.dumps(arguments))


async def test_hung_sync_tools_leave_every_other_call_its_thread(
    release: threading.Event, loopback: int
) -> None:
    pool = ToolPool(max_workers=4, max_abandoned=2 * HUNG)
    registry = _registry(release, pool)
    hung = []
    for _ in range(HUNG // 4):  # four at a time: each gets a thread, none waits in the queue
        hung += await asyncio.gather(*(registry.run_call(_call("hang")) for _ in range(4)))
    assert all(r.error == "timed out after 0.2 s" for r in hung)
    stats = registry.executor_stats()["threads"]
    assert stats["abandoned"] == HUNG and stats["timed_out"] == HUNG
    assert stats["threads"] - stats["abandoned"] <= 4

    # Nothing below waits for the hung threads; release stays unset throughout.
    async with asyncio.timeout(PROMPTLY):
        sync = await registry.run_call(_call("fast_sync", x=21))
        asynchronous = await registry.run_call(_call("fast_async", x=2))
        fetched = await registry.run_call(_call("web.fetch", url=f"http://localhost:{loopback}/"))
        blocking = await run_blocking(lambda: "runtime")
    assert sync.ok and sync.value == 42
    assert asynchronous.ok and asynchronous.value == 6
    assert fetched.ok and fetched.value["text"] == "hello", fetched.error
    assert blocking == "runtime"
    assert not release.is_set()


async def test_dns_lookups_do_not_use_the_default_executor(
    release: threading.Event, loopback: int
) -> None:
    # Anyone's to_thread work may fill asyncio's default executor; the SSRF guard's
    # resolution of "localhost" must not queue behind it.
    loop = asyncio.get_running_loop()
    stuck = [loop.run_in_executor(None, release.wait) for _ in range(HUNG)]
    fetch = http_tool(allow_hosts=["localhost"])
    async with asyncio.timeout(PROMPTLY):
        result = await fetch.acall({"url": f"http://localhost:{loopback}/"})
    assert result.ok and result.value["text"] == "hello", result.error
    release.set()
    await asyncio.gather(*stuck)


async def test_abandoned_threads_are_capped_then_released(release: threading.Event) -> None:
    pool = ToolPool(max_workers=3, max_abandoned=3)
    registry = _registry(release, pool)
    for result in await asyncio.gather(*(registry.run_call(_call("hang")) for _ in range(3))):
        assert result.error is not None and "timed out after 0.2 s" in result.error

    # At the cap: sync calls fail at once, with a typed error; async tools still run.
    refused = await registry.run_call(_call("fast_sync", x=1))
    assert not refused.ok and refused.error is not None
    assert refused.error.startswith("ToolPoolExhausted:")
    assert "3 tool threads are stuck" in refused.error
    assert (await registry.run_call(_call("fast_async", x=1))).value == 3
    stats = pool.stats()["threads"]
    assert stats["abandoned"] == 3 and stats["refused"] == 1

    release.set()  # the hung calls end: their threads come back
    for _ in range(500):
        if pool.stats()["threads"]["abandoned"] == 0:
            break
        await asyncio.sleep(0.01)
    stats = pool.stats()["threads"]
    assert stats["abandoned"] == 0 and stats["released"] == 3
    assert stats["threads"] <= 3  # the extra threads left once released
    assert (await registry.run_call(_call("fast_sync", x=5))).value == 10


async def test_a_call_timed_out_in_the_queue_abandons_nothing(release: threading.Event) -> None:
    pool = ToolPool(max_workers=1)
    started = threading.Event()

    def occupy() -> str:
        started.set()
        release.wait()
        return "done"

    busy = asyncio.ensure_future(pool.run(occupy))
    await asyncio.to_thread(started.wait, PROMPTLY)
    with pytest.raises(TimeoutError, match="still waiting for a tool thread: all 1 busy"):
        await pool.run(lambda: "never", timeout=0.1)
    stats = pool.stats()["threads"]
    assert stats["abandoned"] == 0 and stats["queued"] == 0 and stats["busy"] == 1
    release.set()
    assert await busy == "done"


async def test_cancelled_calls_count_as_abandoned(release: threading.Event) -> None:
    pool = ToolPool(max_workers=2)
    started = threading.Event()

    def occupy() -> None:
        started.set()
        release.wait()

    task = asyncio.ensure_future(pool.run(occupy))
    await asyncio.to_thread(started.wait, PROMPTLY)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.stats()["threads"]["abandoned"] == 1


async def test_sync_tools_see_the_callers_context_variables() -> None:
    where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="unset")

    @tool
    def read_var() -> str:
        """The variable as the tool sees it."""
        return where.get()

    where.set("caller")
    result = await ToolRegistry([read_var], pool=ToolPool(max_workers=1)).run_call(
        _call("read_var")
    )
    assert result.value == "caller"


async def test_sync_tools_run_on_the_tool_pool_not_the_default_executor() -> None:
    @tool
    def thread_name() -> str:
        """The name of the thread running the tool."""
        return threading.current_thread().name

    assert (await thread_name.acall()).value.startswith("llmagentos-tool-")
    pool = ToolPool(max_workers=1, name="mine")
    assert (await ToolRegistry([thread_name], pool=pool).run_call(_call("thread_name"))).value == (
        "mine-1"
    )
    assert default_tool_pool().stats()["threads"]["calls"] >= 1


def test_pool_settings_are_checked() -> None:
    for bad in ({"max_workers": 0}, {"max_abandoned": -1}, {"max_queued": 0}):
        with pytest.raises(ConfigError) as caught:
            ToolPool(**bad)  # type: ignore[arg-type]
        assert next(iter(bad)) in str(caught.value)
