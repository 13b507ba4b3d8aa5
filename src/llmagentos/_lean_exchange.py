"""One request's ASGI ``receive`` and ``send`` on its connection, once its body is whole.

uvicorn's request cycle serves any request: one whose body is still coming, one that
asks ``Expect: 100-continue``, one its app reads piece by piece. For that it makes an
event, a cycle object and a task wrapper per request before the app runs, and the app
then waits on the event for its body. A request the server has read whole (nearly
every proxied request: small, in one read with its head) needs none of it.
:class:`LeanExchange` gives the app that request's body at once and writes what the app
sends straight to the transport, with uvicorn's rules for the reply: its default
headers (``date``, ``server``), header names and values checked, ``Content-Length``
held to, chunked framing when no length is given, no body for ``HEAD``, 204 and 304,
``Connection: close`` honoured, flow control on a full socket.

The protocol that makes it (:mod:`llmagentos.gateway.direct_path`) sees it as uvicorn
sees its cycle: ``response_complete``, ``keep_alive``, ``disconnected`` and
``message_event.set()`` mean the same.
"""

from __future__ import annotations

import asyncio
import http
import re
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Protocol

__all__ = ["LeanExchange", "status_line"]

# What a header may not hold (RFC 9110's token characters for a name; a value may hold
# a tab but no other control character): a reply must never split into two.
_BAD_NAME = re.compile(rb'[\x00-\x1f\x7f()<>@,;:\[\]={} \t\\"]')
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_NO_BODY_STATUSES = frozenset({204, 304})
_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n`` (made once per status)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 599:
            raise RuntimeError(f"an HTTP status must be 100-599 (got {status})")
        try:
            reason = http.HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b""
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return line


class _Flow(Protocol):
    write_paused: bool

    async def drain(self) -> None: ...


class LeanExchange:
    """A whole request's ``receive``/``send`` (module docstring).

    Args:
        scope: the request's ASGI scope.
        transport: the connection's transport.
        flow: the connection's flow control (``write_paused``, ``drain()``).
        default_headers: written first on every reply (uvicorn's ``date`` and ``server``).
        keep_alive: whether the connection stays open after the reply.
        on_response: called once the reply is written whole (the protocol's next
            request, or its keep-alive wait).
    """

    __slots__ = (
        "_chunked", "_given", "_left", "_waiter", "body", "default_headers", "disconnected",
        "flow", "keep_alive", "on_response", "response_complete", "response_started",
        "scope", "transport",
    )  # fmt: skip

    def __init__(
        self,
        scope: dict[str, Any],
        transport: asyncio.Transport,
        flow: _Flow,
        default_headers: Iterable[tuple[bytes, bytes]],
        *,
        keep_alive: bool,
        on_response: Callable[[], None],
    ) -> None:
        self.scope, self.transport, self.flow = scope, transport, flow
        self.default_headers = default_headers
        self.keep_alive = keep_alive
        self.on_response = on_response
        self.body = b""
        """The request's body, appended by the protocol as it is parsed."""
        self.disconnected = False
        self.response_started = self.response_complete = False
        self._chunked = False
        self._left = 0  # bytes of the reply's body still owed to its Content-Length
        self._given = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def message_event(self) -> LeanExchange:
        """What uvicorn's protocol sets on a disconnect: wakes a waiting ``receive``."""
        return self

    def set(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        """The whole body, then (once the reply is sent or the client gone) a disconnect."""
        if not self._given:
            self._given = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not (self.disconnected or self.response_complete):
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self.transport.write(self._head(message["status"], message.get("headers", ())))
        elif not self.response_complete:
            if kind != "http.response.body":
                raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
            self._write(message.get("body", b""), more=message.get("more_body", False))
        else:
            raise RuntimeError(f"{kind!r} sent after the response was complete")

    def respond(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes | memoryview
    ) -> None:
        """A whole reply at once: what ``send`` does for its two messages, unawaited."""
        if self.disconnected:
            return
        head = self._head(status, headers)
        if self._chunked or self.scope["method"] == "HEAD":
            self.transport.write(head)
            self._write(body, more=False)
            return
        if len(body) != self._left:
            raise RuntimeError("the reply's body does not match its Content-Length")
        # One write: held by the servers' coalescing transport to the end of the loop's
        # turn, with every other reply of that turn (measured: fewer turns a request).
        self._left = 0
        self.transport.write(head + body)
        self._complete()

    def _head(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        lines: list[bytes] = []
        names: list[bytes] = []
        values: list[bytes] = []
        chunked: bool | None = None  # None: neither Content-Length nor chunked said
        closing = False
        for pairs in (self.default_headers, headers):
            for given, value in pairs:
                name = given.lower()
                if name == b"content-length" and chunked is None:
                    self._left, chunked = int(value), False
                elif name == b"transfer-encoding" and value.lower() == b"chunked":
                    self._left, chunked = 0, True
                elif name == b"connection" and b"close" in _tokens(value):
                    self.keep_alive, closing = False, True
                names.append(name)
                values.append(value)
                lines += (name, b": ", value, b"\r\n")
        # Two searches for all the headers (a character is in the joined names or values
        # exactly when it is in one of them), not two for each.
        if _BAD_NAME.search(b"".join(names)) or _BAD_VALUE.search(b"".join(values)):
            raise RuntimeError(f"invalid reply header among {names!r}"[:200])
        extra = b""
        if not self.keep_alive and not closing:
            extra = b"connection: close\r\n"
        if chunked is None and self.scope["method"] != "HEAD" and status not in _NO_BODY_STATUSES:
            chunked = True
            extra += b"transfer-encoding: chunked\r\n"
        self._chunked = bool(chunked)
        self.response_started = True  # only now: a bad header above can still get a 500
        return b"%s%s%s\r\n" % (status_line(status), b"".join(lines), extra)

    def _write(self, body: bytes | memoryview, *, more: bool) -> None:
        if self.scope["method"] == "HEAD":
            self._left = 0
        elif self._chunked:
            framed = [b"%x\r\n" % len(body), body, b"\r\n"] if body else []
            if not more:
                framed.append(b"0\r\n\r\n")
            self.transport.write(b"".join(framed))
        else:
            if len(body) > self._left:
                raise RuntimeError("the reply's body is longer than its Content-Length")
            self._left -= len(body)
            self.transport.write(body)
        if more:
            return
        if self._left:
            raise RuntimeError("the reply's body is shorter than its Content-Length")
        self._complete()

    def _complete(self) -> None:
        self.response_complete = True
        self.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",")]
