"""The gateway's HTTP protocol: a whole proxied request goes to the proxy directly.

Through the ASGI stack, a proxied request pays for uvicorn's request cycle, Starlette's
entry and four middlewares (shedding, tracing, admission, dispatch) before the proxy
runs, and for two ASGI messages through each of them after. Measured with ``wrk`` on
two cores, that machinery cost about a fifth of the gateway's CPU per request.
:class:`GatewayHttpProtocol` (the servers' bounded protocol, for the gateway) takes a
request that the proxy would get anyway, once its body is in, and runs the same steps
in one coroutine: the shedder's slots (:meth:`~llmagentos.load_shedding.Shedding.enter`),
the admission checks (:func:`~llmagentos.gateway.admission.admit_scope`), the proxy
(:func:`~llmagentos.gateway.dispatch.proxied_reply`), and the reply written through a
:class:`~llmagentos._lean_exchange.LeanExchange`.

Taken this way: HTTP/1.1 requests with a method the proxy takes, for a registered
service (its first path segment, decoded, as the router reads it), with no body or a
``Content-Length`` within the gateway's ``max_body_bytes``, not pipelined behind
another, while telemetry is off. Everything else (the gateway's own routes, unknown
services, chunked or oversized bodies, ``Expect: 100-continue``, upgrades, HTTP/1.0,
traced requests) goes through the ASGI stack as before, with the same answers.

A body still arriving is collected by the protocol, not by a task holding a slot; one
not whole ``body_timeout`` seconds after its head is answered ``408`` and the connection
closed, as the shedder does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from llmagentos._deadlines import CoarseHandle, deadlines
from llmagentos._http_protocol import BoundedHttpToolsProtocol
from llmagentos._lean_exchange import LeanExchange
from llmagentos.exceptions import GatewayError
from llmagentos.gateway.admission import admit_scope
from llmagentos.gateway.dispatch import PROXY_METHODS, path_params, proxied_reply, split_service
from llmagentos.gateway.registry import RESERVED_NAMES
from llmagentos.load_shedding import BODY_IN, declared_length
from llmagentos.telemetry.state import TELEMETRY
from llmagentos.unread_queue import COMING

if TYPE_CHECKING:
    import asyncio

    from llmagentos.gateway.app import Gateway

__all__ = ["GATEWAY_HTTP", "GatewayHttpProtocol", "gateway_of"]

#: uvicorn's ``http`` setting for the gateway (a string: worker processes import it).
GATEWAY_HTTP = "llmagentos.gateway.direct_path:GatewayHttpProtocol"

log = logging.getLogger("llmagentos.gateway")
_FAILED = b"the gateway failed on this request"
_FAILED_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_FAILED)).encode()),
]


def gateway_of(app: Any) -> Gateway | None:
    """The :class:`~llmagentos.gateway.app.Gateway` an ASGI app serves, if it is one."""
    from llmagentos.gateway.app import Gateway

    found = getattr(getattr(app, "state", None), "gateway", None)
    return found if isinstance(found, Gateway) else None


class GatewayHttpProtocol(BoundedHttpToolsProtocol):
    """The bounded protocol, with whole proxied requests served directly (module
    docstring); on an app that is not a gateway, just the bounded protocol."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._gateway = gateway_of(self.app)
        self._pending: LeanExchange | None = None  # its head parsed, its body coming
        self._serving: LeanExchange | None = None  # handed to the proxy, not answered
        self._body_deadline: CoarseHandle | None = None

    # -- parser callbacks -------------------------------------------------------------

    def on_headers_complete(self) -> None:
        exchange = self._direct_exchange()
        if exchange is None:
            super().on_headers_complete()
            return
        self._head_done()
        self.cycle = self._pending = exchange  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        pending = self._pending
        if pending is not None and self._current() is pending:
            pending.body += body
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        pending = self._pending
        if pending is None or self._current() is not pending:
            super().on_message_complete()
            return
        self._pending = None
        self._in_message = False
        self._cancel_body_deadline()
        pending.scope[BODY_IN] = True
        self._serving = pending
        task = self.loop.create_task(self._serve(pending))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _feed(self, data: bytes) -> None:
        super()._feed(data)
        if self._pending is not None and self._body_deadline is None:
            assert self._gateway is not None  # only a gateway's requests are pending
            timeout = self._gateway.shedding.limits.body_timeout
            if timeout:
                self._body_deadline = deadlines().call_later(timeout, self._body_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_body_deadline()
        for exchange in (self._pending, self._serving):
            if exchange is not None and not exchange.response_complete:
                exchange.disconnected = True
                exchange.set()  # a receive waiting for the disconnect gets it
        super().connection_lost(exc)

    def _current(self) -> object:
        """The request being read: uvicorn's cycle, or a lean exchange in its place."""
        return self.cycle

    # -- what goes the direct way -----------------------------------------------------

    def _direct_exchange(self) -> LeanExchange | None:
        """A lean exchange for this request if the proxy is where it goes (module
        docstring), else ``None`` (the ASGI stack)."""
        gateway = self._gateway
        if gateway is None or TELEMETRY.on or self.root_path or self.limit_concurrency:
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # pipelined behind a request in flight: uvicorn queues it
        parser = self.parser
        if parser.get_http_version() != "1.1" or parser.should_upgrade():
            return None
        method = parser.get_method().decode("ascii")
        if method not in PROXY_METHODS or self.expect_100_continue:
            return None
        declared = declared_length(self.headers)
        if declared < 0 or declared > gateway.max_body_bytes:
            return None  # chunked, or to be refused by its length: the stack reads it
        url = httptools.parse_url(self.url)
        raw_path: bytes = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        name, rest = split_service(path)
        if name in RESERVED_NAMES or gateway.registry.get(name) is None:
            return None
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]
        scope["method"] = method
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = url.query or b""
        scope["path_params"] = path_params(name, rest)
        return LeanExchange(
            scope, self.transport, self.flow, self.server_state.default_headers,
            keep_alive=parser.should_keep_alive(), on_response=self.on_response_complete,
        )  # fmt: skip

    # -- serving ----------------------------------------------------------------------

    async def _serve(self, exchange: LeanExchange) -> None:
        """The shedder's slots, the admission checks and the proxy, as the stack runs
        them; a failure answered as uvicorn answers an app's (500, or the connection
        closed once the reply has begun)."""
        gateway = self._gateway
        assert gateway is not None
        scope = exchange.scope
        shedding = gateway.shedding
        settle = scope.get(COMING)
        if settle is not None:
            settle()  # admitted or refused below, within this step
        try:
            gate, refused = await shedding.enter(scope)
            if refused is not None:
                headers, body = shedding.shed_reply(refused)
                exchange.respond(503, headers, body)
                return
            try:
                await self._proxy(gateway, exchange)
            finally:
                shedding.leave(gate)
        except Exception:
            log.exception("the gateway failed on %s %s", scope["method"], scope["path"][:200])
            if not exchange.response_started:
                exchange.keep_alive = False
                exchange.respond(500, _FAILED_HEADERS, _FAILED)
        finally:
            if self._serving is exchange:
                self._serving = None
            if not exchange.response_complete and not self.transport.is_closing():
                self.transport.close()  # a reply begun and not finished cannot be mended

    async def _proxy(self, gateway: Gateway, exchange: LeanExchange) -> None:
        scope = exchange.scope
        try:
            admit_scope(scope, gateway.admission)
        except GatewayError as err:
            await gateway.refuse_early(scope, exchange.send, err)
            return
        request = Request(scope, exchange.receive)
        reply = await proxied_reply(gateway.proxy, request, ClientDisconnect)
        if reply is None:
            return  # the client left
        if type(reply).__call__ is Response.__call__ and reply.background is None:
            exchange.respond(reply.status_code, reply.raw_headers, reply.body)  # whole
        else:
            await reply(scope, exchange.receive, exchange.send)  # a stream: as it comes

    def _body_too_slow(self) -> None:
        self._body_deadline = None
        pending, self._pending = self._pending, None
        if pending is None or pending.response_complete or self._gateway is None:
            return
        self._settle()
        headers, body = self._gateway.shedding.too_slow_reply()
        pending.respond(408, headers, body)  # with Connection: close, then closed

    def _cancel_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None
