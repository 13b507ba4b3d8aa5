"""The lean exchange writes what uvicorn's cycle would: the reply's bytes on the wire,
framing, keep-alive and the checks on what the app sends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmagentos._lean_exchange import LeanExchange, status_line

DEFAULTS = [(b"date", b"Tue, 08 Dec 2026 00:00:00 GMT"), (b"server", b"uvicorn")]


class Wire(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Flow:
    def __init__(self) -> None:
        self.write_paused = False
        self.drained = 0

    async def drain(self) -> None:
        self.drained += 1
        self.write_paused = False


def _exchange(
    method: str = "GET", *, keep_alive: bool = True, body: bytes = b""
) -> tuple[LeanExchange, Wire, list[int]]:
    wire, done = Wire(), []
    exchange = LeanExchange(
        {"type": "http", "method": method}, wire, Flow(), DEFAULTS,
        keep_alive=keep_alive, on_response=lambda: done.append(1),
    )  # fmt: skip
    exchange.body = body
    return exchange, wire, done


def test_a_whole_reply_is_one_write_with_the_default_headers_first() -> None:
    exchange, wire, done = _exchange()
    exchange.respond(200, [(b"content-length", b"2"), (b"content-type", b"text/plain")], b"ok")
    assert wire.writes == [
        b"HTTP/1.1 200 OK\r\ndate: Tue, 08 Dec 2026 00:00:00 GMT\r\nserver: uvicorn\r\n"
        b"content-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
    ]
    assert exchange.response_complete and done == [1] and not wire.closed


def test_a_reply_without_a_length_is_chunked() -> None:
    exchange, wire, done = _exchange()

    async def run() -> None:
        await exchange.send({"type": "http.response.start", "status": 200, "headers": []})
        await exchange.send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await exchange.send({"type": "http.response.body", "body": b""})

    asyncio.run(run())
    assert b"transfer-encoding: chunked\r\n" in wire.writes[0]
    assert wire.writes[1:] == [b"3\r\nabc\r\n", b"0\r\n\r\n"]
    assert done == [1]


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_no_body_goes_out_where_http_allows_none(method: str, status: int) -> None:
    exchange, wire, _ = _exchange(method)
    length = [(b"content-length", b"5")] if method == "HEAD" else []
    exchange.respond(status, length, b"hello" if method == "HEAD" else b"")
    head = wire.writes[0]
    assert b"".join(wire.writes) == head and head.endswith(b"\r\n\r\n")
    assert b"transfer-encoding" not in head
    assert exchange.response_complete


def test_connection_close_is_said_and_done() -> None:
    exchange, wire, _ = _exchange(keep_alive=False)
    exchange.respond(200, [(b"content-length", b"0")], b"")
    assert b"connection: close\r\n" in wire.writes[0] and wire.closed

    exchange, wire, _ = _exchange()  # the app asks for it
    exchange.respond(200, [(b"connection", b"Keep-Alive, Close"), (b"content-length", b"0")], b"")
    assert wire.writes[0].lower().count(b"close") == 1 and wire.closed and not exchange.keep_alive


@pytest.mark.parametrize(
    "header",
    [(b"x-ok", b"a\r\nset-cookie: stolen=1"), (b"x bad", b"v"), (b"x-nul", b"a\x00b")],
    ids=["crlf-in-value", "space-in-name", "nul-in-value"],
)
def test_a_header_that_would_split_the_reply_is_refused_before_anything_is_written(
    header: tuple[bytes, bytes],
) -> None:
    exchange, wire, _ = _exchange()
    with pytest.raises(RuntimeError, match="invalid reply header"):
        exchange.respond(200, [header, (b"content-length", b"0")], b"")
    assert wire.writes == [] and not exchange.response_started  # a 500 can still go out


@pytest.mark.parametrize("body", [b"four", b"toolong!"])
def test_a_body_that_breaks_its_length_is_an_error(body: bytes) -> None:
    exchange, _, done = _exchange()
    with pytest.raises(RuntimeError, match="Content-Length"):
        exchange.respond(200, [(b"content-length", b"6")], body)
    assert done == []


def test_the_body_is_given_once_then_the_disconnect_after_the_reply() -> None:
    exchange, _, _ = _exchange("POST", body=b"payload")

    async def run() -> list[dict[str, Any]]:
        first = await exchange.receive()
        waiting = asyncio.ensure_future(exchange.receive())
        await asyncio.sleep(0)
        assert not waiting.done()  # nothing more until the reply is sent
        exchange.respond(200, [(b"content-length", b"0")], b"")
        return [first, await waiting]

    first, second = asyncio.run(run())
    assert first == {"type": "http.request", "body": b"payload", "more_body": False}
    assert second == {"type": "http.disconnect"}


def test_a_full_socket_is_drained_first_and_a_gone_client_gets_nothing() -> None:
    exchange, wire, _ = _exchange()
    exchange.flow.write_paused = True  # type: ignore[attr-defined]
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
    asyncio.run(exchange.send(start))
    assert exchange.flow.drained == 1 and len(wire.writes) == 1  # type: ignore[attr-defined]

    exchange, wire, _ = _exchange()
    exchange.disconnected = True
    asyncio.run(exchange.send(start))
    exchange.respond(200, [(b"content-length", b"0")], b"")
    assert wire.writes == []


def test_messages_out_of_order_are_errors() -> None:
    exchange, _, _ = _exchange()
    with pytest.raises(RuntimeError, match=r"http\.response\.start"):
        asyncio.run(exchange.send({"type": "http.response.body", "body": b""}))
    exchange.respond(200, [(b"content-length", b"0")], b"")
    with pytest.raises(RuntimeError, match="after the response was complete"):
        asyncio.run(exchange.send({"type": "http.response.body", "body": b""}))


def test_status_lines() -> None:
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(599) == b"HTTP/1.1 599 \r\n"
    with pytest.raises(RuntimeError, match="100-599"):
        status_line(600)


_TRICKY = st.binary(max_size=6).map(lambda b: bytes(c % 128 for c in b)) | st.sampled_from(
    [b"ok", b"a\r\nb", b"\r\n", b"x: y", b"\t", b"v\x7f", b"\xff", b""]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_TRICKY, _TRICKY), max_size=4))
def test_the_header_checks_are_uvicorns_rules(headers: list[tuple[bytes, bytes]]) -> None:
    """Two searches over all the headers refuse exactly what uvicorn's two per header do."""
    from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

    exchange, wire, _ = _exchange()
    framing = (b"content-length", b"transfer-encoding")
    framed = [(n, v) for n, v in headers if n.lower() not in framing]
    try:
        exchange.respond(200, [*framed, (b"content-length", b"0")], b"")
    except RuntimeError:
        refused = True
    else:
        refused = False
    bad = any(HEADER_RE.search(n) or HEADER_VALUE_RE.search(v) for n, v in framed)
    assert refused == bad
    if not refused:  # and the head parses back into exactly these headers
        lines = wire.writes[0].split(b"\r\n")[1:-2]
        assert len(lines) == len(DEFAULTS) + len(framed) + 1
