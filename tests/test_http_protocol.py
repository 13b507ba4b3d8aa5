"""The servers' HTTP protocol bounds a request's head: 431 past its size, 408 past its
time, over raw sockets to a real uvicorn server; ordinary, pipelined and large-bodied
requests are served as before."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import pytest

uvicorn = pytest.importorskip("uvicorn", reason="needs uvicorn (llmagentos[serve])")

from llmagentos._http_protocol import bounded_http  # noqa: E402
from tests.threaded_server import serving  # noqa: E402

LIMIT, SECONDS = 4096, 0.5


async def _app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"path": scope["path"], "body_bytes": size}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serving(_app, http=bounded_http(max_head_bytes=LIMIT, head_seconds=SECONDS)) as chosen:
        yield chosen


def _exchange(port: int, *pieces: bytes, pause: float = 0.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        for piece in pieces:
            raw.sendall(piece)
            time.sleep(pause)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    return answer


def _statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def test_an_ordinary_request_is_served(port: int) -> None:
    answer = _exchange(port, b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert _statuses(answer) == [200]


def test_a_head_over_the_limit_is_431_and_closed(port: int) -> None:
    big = b"GET /a HTTP/1.1\r\nHost: h\r\nX-Big: " + b"x" * (LIMIT * 64)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            for start in range(0, len(big), 1024):
                raw.sendall(big[start : start + 1024])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending
        answer = raw.recv(65536)
    assert _statuses(answer) == [431]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["field"] == "headers" and str(LIMIT) in body["detail"]


@pytest.mark.parametrize(
    "sent", [b"", b"GET /a HTTP/1.1\r\nHost: h\r\n"], ids=["nothing", "half a head"]
)
def test_a_head_that_does_not_arrive_in_time_is_408_and_closed(port: int, sent: bytes) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        if sent:
            raw.sendall(sent)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert _statuses(answer) == [408]
    assert SECONDS * 0.8 <= time.monotonic() - started < 5


def test_pipelined_and_slow_but_timely_and_large_bodied_requests_are_served(port: int) -> None:
    two = (
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert _statuses(_exchange(port, two)) == [200, 200]
    head = b"GET /slow HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    dribbled = [head[i : i + 8] for i in range(0, len(head), 8)]
    assert _statuses(_exchange(port, *dribbled, pause=0.01)) == [200]  # 0.07 s in all
    body = b"y" * (LIMIT * 256)  # a body is not a head
    post = b"POST /up HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(
        body
    )
    answer = _exchange(port, post + body)
    assert _statuses(answer) == [200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["body_bytes"] == len(body)


@pytest.fixture(scope="module")
def brief_port() -> Iterator[int]:
    """A server whose keep-alive is 1 s."""
    with serving(_app, http=bounded_http(), timeout_keep_alive=1, loop="asyncio") as chosen:
        yield chosen


def _one(raw: socket.socket) -> bytes:
    raw.sendall(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")
    reply = b""
    while not reply.endswith(b"}"):
        piece = raw.recv(65536)
        assert piece, "closed while in use"
        reply += piece
    return reply


def test_an_idle_connection_is_closed_after_the_keep_alive_and_a_busy_one_is_not(
    brief_port: int,
) -> None:
    with socket.create_connection(("127.0.0.1", brief_port), timeout=10) as raw:
        for _ in range(5):  # 2 s of requests 0.4 s apart: each answer re-arms the wait
            assert _one(raw).startswith(b"HTTP/1.1 200")
            time.sleep(0.4)
        assert raw.recv(65536) == b""  # then idle: the server closes it (else a timeout)
