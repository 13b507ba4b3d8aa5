"""The default hop (:class:`Http1Upstream`) against replicas that answer byte by byte as
scripted: chunked, close-delimited and informational replies, HEAD, replies that do
not parse or switch protocols, bytes nobody asked for, requests it must not send, the
pool, the replay rule and a slow reader of a fast stream. Real sockets on loopback."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from llmagentos.gateway.http1_hop import STREAM_BUFFER, Http1Upstream
from llmagentos.gateway.upstream import UpstreamFailed

#: What a scripted replica answers to the n-th request on a connection (0-based), given
#: the connection's index: bytes to send (ending in CLOSE: then it closes), or None to
#: close without answering.
Script = Callable[[int, int, bytes], bytes | None]
CLOSE = b"<then close>"


@dataclass
class Replica:
    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)  # each request's head and body
    closed: asyncio.Event = field(default_factory=asyncio.Event)


def _ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def replica(script: Script) -> AsyncIterator[Replica]:
    state = Replica("")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = state.connections
        state.connections += 1
        n = 0
        try:
            while (request := await _read_request(reader)) is not None:
                state.requests.append(request)
                answer = script(index, n, request)
                n += 1
                if answer is None:
                    break
                writer.write(answer.removesuffix(CLOSE))
                await writer.drain()
                if answer.endswith(CLOSE):
                    break
        finally:
            writer.close()
            state.closed.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()


async def test_chunked_close_delimited_and_informational_replies_read_whole() -> None:
    replies = {
        "/chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
        "/early": b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
        b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(b"final"),
        "/until-close": b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it" + CLOSE,
    }

    def script(_conn: int, _n: int, request: bytes) -> bytes | None:
        return replies[request.split(b" ")[1].decode()]

    client = Http1Upstream()
    async with replica(script) as up:
        got = {}
        for path in ("/chunked", "/early", "/until-close"):
            reply = await client.request("GET", up.url + path, body=b"", headers={}, timeout=5)
            got[path] = (reply.status, reply.content)
        await client.aclose()
    assert got == {
        "/chunked": (200, b"abcdefg"),
        "/early": (200, b"final"),  # the 1xx replies skipped, their headers not kept
        "/until-close": (200, b"all of it"),
    }


async def test_keep_alive_reuses_one_connection_and_a_close_ends_it() -> None:
    def script(_conn: int, n: int, _request: bytes) -> bytes:
        return _ok(extra=b"connection: close\r\n") + CLOSE if n == 2 else _ok()

    client = Http1Upstream()
    async with replica(script) as up:
        for _ in range(5):
            reply = await client.request("GET", up.url + "/", body=b"", headers={}, timeout=5)
            assert reply.content == b"ok"
        await client.aclose()
    assert up.connections == 2  # three on the first (the third said close), two on the next


async def test_a_head_reply_has_no_body_and_the_next_request_is_answered() -> None:
    def script(_conn: int, _n: int, request: bytes) -> bytes:
        if request.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"  # the length, no body
        return _ok(b"after")

    client = Http1Upstream()
    async with replica(script) as up:
        head = await client.request("HEAD", up.url + "/", body=b"", headers={}, timeout=5)
        after = await client.request("GET", up.url + "/", body=b"", headers={}, timeout=5)
        await client.aclose()
    assert (head.status, head.content) == (200, b"")
    assert ("content-length", "5") in head.headers
    assert after.content == b"after"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 abc nonsense\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort" + CLOSE,
    ],
)
async def test_a_reply_that_does_not_parse_or_ends_early_fails_the_hop(answer: bytes) -> None:
    client = Http1Upstream()
    async with replica(lambda *_: answer) as up:
        with pytest.raises(UpstreamFailed):
            # POST: not replayable, so each answer is seen once and fails
            await client.request("POST", up.url + "/", body=b"x", headers={}, timeout=5)
        await client.aclose()


async def test_bytes_after_a_reply_spend_the_connection_not_the_next_reply() -> None:
    def script(conn: int, _n: int, _request: bytes) -> bytes:
        forged = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"
        return _ok(b"first") + forged if conn == 0 else _ok(b"second")

    client = Http1Upstream()
    async with replica(script) as up:
        first = await client.request("GET", up.url + "/", body=b"", headers={}, timeout=5)
        await asyncio.sleep(0.05)  # the forged reply arrives on the idle connection
        second = await client.request("GET", up.url + "/", body=b"", headers={}, timeout=5)
        await client.aclose()
    assert (first.content, second.content) == (b"first", b"second")
    assert up.connections == 2


@pytest.mark.parametrize(
    ("method", "target", "headers", "named"),
    [
        ("GET", "/a\r\nx-injected: 1", {}, "target"),
        ("GET", "/a b", {}, "target"),
        ("GET", "/", {"x-one": "1\r\nx-injected: 1"}, "x-one"),
        ("GET", "/", {"x-one": "nul\x00"}, "x-one"),
        ("GET", "/", {"x-one: 1\r\nx-injected": "1"}, "x-one"),
        ("GET", "/", {"bad name": "1"}, "bad name"),
        ("GET", "/", {"x-one": "caf\u00e9\u2603"}, "Latin-1"),
        ("GET /x HTTP/1.1\r\n", "/", {}, "method"),
    ],
)
async def test_what_cannot_be_sent_as_given_is_refused_before_any_byte(
    method: str, target: str, headers: dict[str, str], named: str
) -> None:
    client = Http1Upstream()
    async with replica(lambda *_: _ok()) as up:
        with pytest.raises(UpstreamFailed, match="not sent") as caught:
            await client.request(method, up.url + target, body=b"", headers=headers, timeout=5)
        await client.aclose()
    assert named in str(caught.value)
    assert up.connections == 0  # nothing reached the replica


async def test_the_request_goes_out_as_given() -> None:
    client = Http1Upstream()
    async with replica(lambda *_: _ok()) as up:
        await client.request(
            "POST", up.url + "/p/%2e%2E?q=1&q=2", body=b"{}",
            headers=[("X-Case", "Kept"), ("x-rep", "1"), ("x-rep", "2")], timeout=5,
        )  # fmt: skip
        await client.request("PUT", up.url, body=b"", headers={}, timeout=5)
        await client.aclose()
    port = up.url.rsplit(":", 1)[1]
    assert up.requests[0] == (
        b"POST /p/%2e%2E?q=1&q=2 HTTP/1.1\r\nhost: 127.0.0.1:" + port.encode() + b"\r\n"
        b"X-Case: Kept\r\nx-rep: 1\r\nx-rep: 2\r\ncontent-length: 2\r\n\r\n{}"
    )
    assert up.requests[1].startswith(b"PUT / HTTP/1.1\r\n")  # an empty path is "/"
    assert b"content-length: 0\r\n" in up.requests[1]  # a PUT always says its length


@pytest.mark.parametrize("replayable", [True, False])
async def test_a_close_under_a_pooled_request_is_sent_again_only_if_it_may_run_twice(
    replayable: bool,
) -> None:
    # The replica reads the second request on the first connection, then closes it
    # unanswered: a close that crossed the request on the wire.
    def script(conn: int, n: int, _request: bytes) -> bytes | None:
        return None if conn == 0 and n == 1 else _ok(b"c%d" % conn)

    client = Http1Upstream()
    async with replica(script) as up:
        await client.request("POST", up.url + "/", body=b"1", headers={}, timeout=5)
        if replayable:
            reply = await client.request(
                "POST", up.url + "/", body=b"2", headers={}, timeout=5, replayable=True
            )
            assert reply.content == b"c1"  # once more, on a new connection
        else:
            with pytest.raises(UpstreamFailed):
                await client.request("POST", up.url + "/", body=b"2", headers={}, timeout=5)
        await client.aclose()
    assert len(up.requests) == (3 if replayable else 2)


async def test_a_slow_reader_of_a_fast_stream_holds_a_bounded_buffer() -> None:
    piece = b"data: " + b"x" * 1000 + b"\n\n"
    total = 8 * 1024 * 1024 // len(piece)
    stream = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(total))
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + stream + b"0\r\n\r\n"
    )
    client = Http1Upstream()
    async with replica(lambda *_: answer) as up:
        reply = await client.request("GET", up.url + "/", body=b"", headers={}, timeout=5)
        assert reply.stream is not None
        received, largest = 0, 0
        async for part in reply.stream:
            received += len(part)
            largest = max(largest, len(part))
            await asyncio.sleep(0.001)  # slower than loopback
        await client.aclose()
    assert received == total * len(piece)
    # Reading stops past STREAM_BUFFER; one more read of the socket (at most 256 KiB) may
    # already be in.
    assert largest <= STREAM_BUFFER + 256 * 1024


async def test_a_stream_dropped_unread_closes_its_connection() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n"  # and nothing more
    )
    client = Http1Upstream()
    async with replica(lambda *_: answer) as up:
        reply = await client.request("GET", up.url + "/", body=b"", headers={}, timeout=5)
        assert reply.stream is not None
        del reply
        gc.collect()
        await asyncio.wait_for(up.closed.wait(), 5)  # the replica saw the close
        await client.aclose()


async def test_an_idle_connection_is_closed_after_the_idle_timeout_with_no_request() -> None:
    client = Http1Upstream(idle_timeout=0.2)
    async with replica(lambda *_: _ok()) as up:
        await client.request("GET", up.url + "/", body=b"", headers={}, timeout=5)
        assert not up.closed.is_set()  # pooled, open
        await asyncio.wait_for(up.closed.wait(), 0.2 + 1.0)  # let go, no request needed
        again = await client.request("GET", up.url + "/", body=b"", headers={}, timeout=5)
        await client.aclose()
    assert again.content == b"ok" and up.connections == 2


def test_a_lying_replica_cannot_smuggle_a_reply_to_the_next_client(tmp_path) -> None:
    """Through a real gateway process: a replica answering with two lengths is a 502,
    and a forged reply it sends after a good one never reaches anyone."""
    import socket
    import subprocess
    import threading

    import httpx

    from llmagentos._processes import start_server, stop_processes

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    forged = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                head = conn.recv(65536)
                if b"/two-lengths" in head:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
                                 b"content-length: 7\r\n\r\nokforged")  # fmt: skip
                else:
                    conn.sendall(_ok(b"real") + forged)  # a second reply nobody asked for
                conn.recv(65536)  # until the gateway closes (or sends the next request)

    threading.Thread(target=serve, daemon=True).start()
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[gateway]\nhealth_interval = 0\nbreaker_failures = 1000\n\n"
        f'[[services]]\nname = "up"\nreplicas = ["http://127.0.0.1:{port}"]\n'
    )
    process: subprocess.Popen[bytes]
    process, url = start_server(["llmagentos", "gateway", str(config)])
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/up/two-lengths", content=b"x").status_code == 502
            replies = [client.post("/up/real", content=b"x") for _ in range(5)]
        assert [(r.status_code, r.content) for r in replies] == [(200, b"real")] * 5
    finally:
        stop_processes(process)
        listener.close()
