"""A reply's head leaves with its body in one write; a head whose body is slow leaves
at the end of the loop's turn. On a recording transport, then through a real uvicorn
server with the servers' protocol and a raw socket."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from llmagentos._write_coalescing import HOLD_BYTES, CoalescingTransport

uvicorn = pytest.importorskip("uvicorn", reason="needs uvicorn (llmagentos[serve])")

from llmagentos._http_protocol import bounded_http  # noqa: E402
from tests.threaded_server import serving  # noqa: E402


class Recording(asyncio.Transport):
    """What the inner transport was asked to do, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", b""))

    def abort(self) -> None:
        self.calls.append(("abort", b""))

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.calls.append(("set_protocol", b""))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


async def _turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_head_goes_with_its_body_and_a_lone_one_at_the_turn_end() -> None:
    inner = Recording()
    outer = CoalescingTransport(inner, asyncio.get_running_loop())
    outer.write(b"HEAD\r\n\r\n")
    assert inner.calls == []  # held for the body
    outer.write(b"body")
    assert inner.calls == [("write", b"HEAD\r\n\r\nbody")]
    outer.write(b"head of a stream")
    await _turn()
    assert inner.calls[-1] == ("write", b"head of a stream")  # not held past the turn
    big = b"x" * HOLD_BYTES
    outer.write(big)
    assert inner.calls[-1] == ("write", big)  # a large write is never held
    outer.write(b"head")
    outer.write(big)
    assert inner.calls[-2:] == [("write", b"head"), ("write", big)]  # no copy of it
    assert outer.get_write_buffer_size() >= 0


async def test_close_and_a_new_protocol_send_what_is_held_first_abort_drops_it() -> None:
    inner = Recording()
    outer = CoalescingTransport(inner, asyncio.get_running_loop())
    outer.write(b"last words")
    outer.close()
    assert inner.calls == [("write", b"last words"), ("close", b"")]
    inner.calls.clear()
    outer.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    outer.set_protocol(asyncio.Protocol())
    outer.write(b"frame")  # the new protocol's writes go out as made
    assert [c for c, _ in inner.calls] == ["write", "set_protocol", "write"]
    inner.calls.clear()
    other = CoalescingTransport(inner, asyncio.get_running_loop())
    other.write(b"never sent")
    other.abort()
    await _turn()
    assert inner.calls == [("abort", b"")]


_RELEASE = threading.Event()


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
        while not _RELEASE.is_set():  # the client has the head only once it is sent
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"data: 1\n\n"})
        return
    body = b'{"ok": true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serving(_app, http=bounded_http(), loop="asyncio") as chosen:
        yield chosen


def test_a_real_server_sends_a_small_reply_in_one_write(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncio import selector_events

    writes: list[bytes] = []
    real = selector_events._SelectorSocketTransport.write

    def counted(self: Any, data: Any) -> None:
        writes.append(bytes(data))
        real(self, data)

    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", counted)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"GET /small HTTP/1.1\r\nhost: x\r\n\r\n")
        reply = b""
        while not reply.endswith(b'{"ok": true}'):
            reply += raw.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(writes) == 1 and writes[0] == reply  # the head and the body together


def test_a_streamed_reply_s_head_arrives_before_its_body_is_made(port: int) -> None:
    _RELEASE.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(65536)  # would time out if the head waited for the body
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"data: 1" not in head
        _RELEASE.set()
        rest = head.partition(b"\r\n\r\n")[2]
        while b"data: 1" not in rest:
            rest += raw.recv(65536)
