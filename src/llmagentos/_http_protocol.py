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

It also leaves a request unread while the server is full, when the app has an
:class:`~llmagentos.unread_queue.UnreadQueue` (``reads_per_turn``): the connection is
paused with the bytes already received kept aside, and read when the queue says so.

Two things for speed: it marks a request whose whole body is in (the shedder's
:data:`~llmagentos.load_shedding.BODY_IN`, so it need not read the body ahead), and it
writes through a :class:`~llmagentos._write_coalescing.CoalescingTransport`, so a
reply's head and body leave in one ``send``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from llmagentos._deadlines import deadlines
from llmagentos._write_coalescing import CoalescingTransport
from llmagentos.load_shedding import BODY_IN
from llmagentos.unread_queue import COMING, EXPIRED, unread_queue_of

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
#: How long a request read from the unread queue may count as coming while the rest of
#: it arrives (then it holds no room: a slow body must not keep others unread).
SLOW_BODY_GRACE = 0.02
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
        # A reply's head goes out with its body: one send, not two (_write_coalescing).
        self.transport = CoalescingTransport(transport, self.loop)
        self._in_head = True  # reading a head (the first one: from the connection's start)
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.head_seconds, self._head_timed_out
        )
        self._unread = unread_queue_of(self.app)
        if self._unread is not None:
            self._unread.bind(self.loop)
        self._parked: bytes | None = None  # a request's first bytes, left unread
        self._in_message = False  # between a request's first byte and its last
        self._expired = False  # the next request is read only to be refused
        self._coming = False  # its request counts in the queue's ``coming``
        self._settle_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        unread = self._unread
        if unread is None or self._in_message:
            self._feed(data)
            return
        if self._parked is not None:
            self._parked += data  # came with the pause: kept with the rest
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._feed(data)  # pipelined behind a request in flight: uvicorn queues it
        elif unread.take():
            self._coming = True
            self._read(data)
        elif data.startswith(unread.probe_lines):
            self._feed(data)
        else:
            self._unset_keepalive_if_required()  # waiting, not idle
            self._parked = data
            self.transport.pause_reading()
            unread.park(self)

    def unpark(self, *, expired: bool) -> None:
        """Read the request left unread: to serve it, or (``expired``) to refuse it."""
        data, self._parked = self._parked, None
        self._coming = not expired  # the queue counted it
        if data is None or self.transport.is_closing():
            self._settle()
            return
        self.transport.resume_reading()
        self._expired = expired
        self._read(data)

    def _read(self, data: bytes) -> None:
        self._feed(data)
        if self._coming and self._settle_timer is None:
            handed_on = self.cycle is not None and self.cycle.scope is self.scope
            if self._in_message or not handed_on:
                # Not a whole request handed to the app yet: the rest often comes a
                # moment later (a body written apart from its head), else slowly, and a
                # slow body holds no room; a WebSocket upgrade goes to another protocol,
                # never to the shedder that would settle it.
                self._settle_timer = self.loop.call_later(SLOW_BODY_GRACE, self._settle)

    def _settle(self) -> None:
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        if self._coming:
            self._coming = False
            if self._unread is not None:
                self._unread.settle()

    def _feed(self, data: bytes) -> None:
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
        self._in_message = True
        if self._expired:
            self._expired = False
            self.scope[EXPIRED] = True  # type: ignore[literal-required]
        elif self._coming:
            self.scope[COMING] = self._settle  # type: ignore[literal-required]

    def on_message_complete(self) -> None:
        self._in_message = False
        self.scope[BODY_IN] = True  # type: ignore[literal-required]  # the shedder's cue
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # uvicorn's own, but for its keep-alive wait: a coarse deadline (up to 50 ms
        # late on a wait of seconds) instead of a timer handle made and cancelled for
        # every response on a busy connection.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self.timeout_keep_alive_task = deadlines().call_later(  # type: ignore[assignment]
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def shutdown(self) -> None:
        if self._parked is not None and self._unread is not None:
            self._unread.forget(self)
            self.unpark(expired=True)  # answered 503, then closed below
        super().shutdown()

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def _head_done(self) -> None:
        """The head is whole: its bounds no longer apply."""
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle()
        if self._parked is not None and self._unread is not None:
            self._parked = None
            self._unread.forget(self)
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
        self._settle()
        self.logger.info("refused a request's head (%d): %s", status, detail)
        self.transport.write(_refusal(status, reason, detail))
        self.transport.close()


def bounded_http(**limits: Any) -> type[BoundedHttpToolsProtocol]:
    """The protocol class with other bounds (``max_head_bytes``, ``head_seconds``)."""
    unknown = set(limits) - {"max_head_bytes", "head_seconds"}
    if unknown:
        raise TypeError(f"unknown limits: {sorted(unknown)}")
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), dict(limits))
