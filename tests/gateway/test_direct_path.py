"""The gateway's direct path (``gateway/direct_path.py``), at the real boundary: raw
HTTP/1.1 to a real gateway process in front of a real replica.

A whole proxied request skips the ASGI stack; every answer must be what the stack
gives (a chunked body, which the stack still serves, is the control), and the
connection must stay framed: pipelined requests answered in order, keep-alive kept and
ended when asked, a ``HEAD`` reply without its body, a stream relayed as it comes, a
body that stalls refused with 408.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmagentos._processes import start_server, stop_processes

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def gateway(echo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    config = Path(tmp_path_factory.mktemp("direct")) / "gw.toml"
    config.write_text(
        f"[gateway]\nhealth_interval = 0\nbody_timeout = {BODY_TIMEOUT}\n\n"
        f'[[services]]\nname = "up"\nreplicas = ["{echo}"]\n'
    )
    process, url = start_server(["llmagentos", "gateway", str(config), "--access-log", "off"])
    host, port = url.removeprefix("http://").split(":")
    yield host, int(port)
    stop_processes(process)


class Connection:
    """One client connection, read reply by reply (heads parsed by hand)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._more():
                raise EOFError("connection closed mid-reply")
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._more():
                raise EOFError("connection closed mid-line")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def head(self) -> tuple[int, list[tuple[str, str]]]:
        status = int(self._line().split()[1])
        headers = []
        while line := self._line():
            name, value = line.decode("latin-1").split(":", 1)
            headers.append((name.lower(), value.strip()))
        return status, headers

    def reply(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        status, pairs = self.head()
        headers = dict(pairs)
        if head_only:
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._line(), 16):
                body += self._take(size)
                self._take(2)
            self._line()
            return status, headers, body
        return status, headers, self._take(int(headers.get("content-length", "0")))

    def chunk(self) -> bytes:
        """One chunk of a chunked body."""
        size = int(self._line(), 16)
        data = self._take(size)
        self._take(2)
        return data

    def closed(self) -> bool:
        """Whether the peer has closed (after what is buffered)."""
        self.sock.settimeout(5)
        try:
            return self.buffer == b"" and not self._more()
        except (ConnectionResetError, TimeoutError):
            return False

    def close(self) -> None:
        self.sock.close()


def _request(method: str, target: str, body: bytes = b"", *, extra: str = "") -> bytes:
    length = f"content-length: {len(body)}\r\n" if body or method == "POST" else ""
    head = f"{method} {target} HTTP/1.1\r\nhost: gateway\r\n{length}{extra}\r\n"
    return head.encode("latin-1") + body


def _chunked(method: str, target: str, body: bytes) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nhost: gateway\r\ntransfer-encoding: chunked\r\n\r\n"
    return head.encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def _seen(reply: bytes) -> dict[str, object]:
    """What the replica saw, without what differs on every request (ids, the peer,
    how the body was framed)."""
    seen = json.loads(reply)
    framing = {"content-length", "transfer-encoding", "x-request-id", "traceparent"}
    seen["headers"] = [h for h in seen["headers"] if h[0] not in framing]
    seen.pop("peer")
    return seen


@pytest.fixture
def connection(gateway: tuple[str, int]) -> Iterator[Connection]:
    opened = Connection(gateway)
    yield opened
    opened.close()


def test_a_whole_request_is_answered_as_the_stack_answers_a_chunked_one(
    connection: Connection,
) -> None:
    target = "/up/inspect/a%20b?x=1&y=%2F"
    connection.send(_request("POST", target, b'{"k": 1}', extra="x-custom: one\r\n"))
    status, headers, body = connection.reply()
    connection.send(_chunked("POST", target, b'{"k": 1}'))  # served by the ASGI stack
    status_chunked, headers_chunked, body_chunked = connection.reply()
    assert status == status_chunked == 200
    assert sorted(headers) == sorted(headers_chunked)  # the same reply headers
    direct, stacked = _seen(body), _seen(body_chunked)
    assert direct["raw_path"] == "/inspect/a%20b"  # forwarded as sent, still encoded
    assert direct["query"] == "x=1&y=%2F"
    assert direct["body"] == stacked["body"] == '{"k": 1}'
    assert ["x-custom", "one"] in direct["headers"]
    stacked["headers"] = [h for h in stacked["headers"] if h[0] != "x-custom"]
    direct["headers"] = [h for h in direct["headers"] if h[0] != "x-custom"]
    assert direct == stacked


def test_pipelined_requests_are_answered_in_order_on_one_connection(
    connection: Connection,
) -> None:
    connection.send(b"".join(_request("POST", "/up/echo", word) for word in (b"one", b"two", b"3")))
    bodies = [json.loads(connection.reply()[2])["body"] for _ in range(3)]
    assert bodies == ["one", "two", "3"]
    connection.send(_request("GET", "/up/echo"))  # and the connection still serves
    assert connection.reply()[0] == 200


def test_keep_alive_holds_until_the_client_asks_to_close(connection: Connection) -> None:
    for _ in range(3):
        connection.send(_request("POST", "/up/echo", b"x"))
        status, headers, _ = connection.reply()
        assert status == 200 and headers.get("connection") != "close"
    connection.send(_request("POST", "/up/echo", b"x", extra="connection: close\r\n"))
    status, headers, _ = connection.reply()
    assert status == 200 and headers["connection"] == "close"
    assert connection.closed()


def test_a_head_reply_has_no_body_and_the_connection_stays_framed(
    connection: Connection,
) -> None:
    connection.send(_request("HEAD", "/up/inspect"))
    status, headers, _ = connection.reply(head_only=True)
    assert status == 200 and int(headers["content-length"]) > 0
    connection.send(_request("POST", "/up/echo", b"after"))  # no body bytes in between
    assert json.loads(connection.reply()[2])["body"] == "after"


def test_a_stream_is_relayed_as_it_comes(gateway: tuple[str, int]) -> None:
    stream, nudge = Connection(gateway), Connection(gateway)
    try:
        stream.send(_request("GET", "/up/sse?n=1"))
        status, headers = stream.head()
        assert status == 200 and dict(headers)["transfer-encoding"] == "chunked"
        assert stream.chunk() == b"data: 0\n\n"  # before the replica has sent the rest
        nudge.send(_request("POST", "/up/sse/next"))
        assert nudge.reply()[0] == 200
        rest = b""
        while chunk := stream.chunk():
            rest += chunk
        assert rest == b"data: [DONE]\n\n"
        stream.send(_request("POST", "/up/echo", b"next"))  # the stream ended cleanly
        assert json.loads(stream.reply()[2])["body"] == "next"
    finally:
        stream.close()
        nudge.close()


def test_a_body_sent_in_pieces_arrives_whole(connection: Connection) -> None:
    whole = _request("POST", "/up/echo", b"abcdef")
    connection.send(whole[:-4])  # the head and two bytes
    time.sleep(0.3)
    connection.send(whole[-4:])
    assert json.loads(connection.reply()[2])["body"] == "abcdef"


def test_a_body_that_stalls_is_refused_with_408_and_the_connection_closed(
    connection: Connection,
) -> None:
    started = time.monotonic()
    connection.send(_request("POST", "/up/echo", b"abcdef")[:-4])  # 4 bytes never come
    status, headers, body = connection.reply()
    waited = time.monotonic() - started
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body)["field"] == "body"
    assert BODY_TIMEOUT - 0.05 <= waited < BODY_TIMEOUT + 2
    assert connection.closed()


def test_a_client_that_leaves_mid_request_harms_nobody(gateway: tuple[str, int]) -> None:
    for _ in range(5):
        gone = Connection(gateway)
        gone.send(_request("GET", "/up/slow?s=0.2"))
        gone.close()  # before the replica answers
    time.sleep(0.4)  # the replica has answered them all by now
    after = Connection(gateway)
    try:
        after.send(_request("POST", "/up/echo", b"still here"))
        assert json.loads(after.reply()[2])["body"] == "still here"
    finally:
        after.close()


def test_refusals_before_routing_still_apply(connection: Connection) -> None:
    connection.send(_request("GET", "/up/inspect/%2e%2e/admin"))
    status, _, body = connection.reply()
    assert status == 400 and "field" in json.loads(body)
    connection.send(_request("GET", "/up/echo"))  # answered, and the connection serves on
    assert connection.reply()[0] == 200
