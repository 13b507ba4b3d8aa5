"""uvicorn's httptools protocol with bounds on each request's head: its size and its time.

httptools, uvicorn's default parser, takes a head of any size: one request with a 64
MiB header made the gateway hold 447 MiB before any check of ours ran. And uvicorn
waits as long as a client likes for a head that never ends (a connection that sends
nothing, or a byte every few seconds), each one an open socket and parser. So a head
past :data:`MAX_HEAD_BYTES` is answered 431, one not whole :data:`HEAD_SECONDS` after
it began (or after the connection opened) 408, and the connection is closed.

The servers pass :class:`BoundedHttpToolsProtocol` as uvicorn's ``http``. A head that
arrives in one read, as nearly every one does, costs two attribute checks: the timer
is armed only while a head is incomplete.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "BOUNDED_HTTP",
    "HEAD_SECONDS",
    "MAX_HEAD_BYTES",
    "BoundedHttpToolsProtocol",
    "bounded_http",
]

#: The most bytes a request line and headers may take (nginx: 8 KiB per line by default).
MAX_HEAD_BYTES = 64 * 1024
#: How long a request's head may take to arrive whole.
HEAD_SECONDS = 10.0
#: uvicorn's ``http`` setting for it (a string: worker processes import it themselves).
BOUNDED_HTTP = "llmagentos._http_protocol:BoundedHttpToolsProtocol"


def _refusal(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail, "field": "headers"}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` refusing a head over ``max_head_bytes`` (431) or not
    whole within ``head_seconds`` (408)."""

    max_head_bytes = MAX_HEAD_BYTES
    head_seconds = HEAD_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True  # reading a head (the first one: from the connection's start)
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.head_seconds, self._head_timed_out
        )

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # A message that begins within this read starts its count at 0 (below): at
            # most one read of a head goes uncounted, so the bound holds within a read.
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            if self._head_bytes > self.max_head_bytes:
                detail = f"a request's line and headers are over {self.max_head_bytes} bytes"
                self._refuse(431, "Request Header Fields Too Large", detail)
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_seconds, self._head_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            detail = f"no whole request line and headers within {self.head_seconds:g} s"
            self._refuse(408, "Request Timeout", detail)

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self.logger.info("refused a request's head (%d): %s", status, detail)
        self.transport.write(_refusal(status, reason, detail))
        self.transport.close()


def bounded_http(**limits: Any) -> type[BoundedHttpToolsProtocol]:
    """The protocol class with other bounds (``max_head_bytes``, ``head_seconds``)."""
    unknown = set(limits) - {"max_head_bytes", "head_seconds"}
    if unknown:
        raise TypeError(f"unknown limits: {sorted(unknown)}")
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), dict(limits))
