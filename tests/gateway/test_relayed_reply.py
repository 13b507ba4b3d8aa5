"""A replica's whole answer as the client gets it: its status, body and end-to-end
headers (repeats kept), a length only where a body may be, and the request id."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

from llmagentos.gateway.hop import reply_from
from llmagentos.gateway.upstream import UpstreamReply


async def _sent(status: int, headers: list[tuple[str, str]], body: bytes) -> list[Any]:
    reply = reply_from(UpstreamReply(status, headers, body), "rid-1", on_end=lambda: None)
    messages: list[Any] = []

    async def send(message: Any) -> None:
        messages.append(message)

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    await reply({"type": "http"}, receive, send)
    assert reply.status_code == status
    return messages


async def test_a_whole_reply_keeps_its_end_to_end_headers_and_gets_its_own_length() -> None:
    start, body = await _sent(
        200,
        [("Content-Length", "999"), ("Content-Type", "application/json"), ("Set-Cookie", "a=1"),
         ("set-cookie", "b=2"), ("Connection", "x-secret"), ("X-Secret", "s"),
         ("Server", "replica/1"), ("Date", "then"), ("X-Request-Id", "forged")],
        b'{"ok": 1}',
    )  # fmt: skip
    assert start == {
        "type": "http.response.start", "status": 200,
        "headers": [(b"content-length", b"9"), (b"content-type", b"application/json"),
                    (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
                    (b"x-request-id", b"rid-1")],
    }  # fmt: skip
    assert body == {"type": "http.response.body", "body": b'{"ok": 1}'}


@pytest.mark.parametrize("status", [204, 304])
async def test_a_reply_that_has_no_body_gets_no_length(status: int) -> None:
    start, _ = await _sent(status, [("ETag", '"v1"')], b"")
    assert start["headers"] == [(b"etag", b'"v1"'), (b"x-request-id", b"rid-1")]
