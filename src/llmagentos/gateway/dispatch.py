"""The proxied requests' short way in: straight to the proxy, past Starlette's router.

Every request for a registered service would otherwise walk Starlette's exception
middlewares and try each of the gateway's own routes before the catch-all one; on
the hot path that is a large part of the gateway's own cost. :class:`ProxyDispatch`
(pure ASGI, innermost of the gateway's middlewares) hands a request whose first path
segment names a registered service, with a method the proxy takes, to the proxy
directly; everything else (the gateway's own routes, unknown services, other
methods) goes through Starlette as before, with the same answers.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from llmagentos.gateway.hop import problem
from llmagentos.gateway.registry import RESERVED_NAMES, ServiceRegistry

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["PROXY_METHODS", "ProxyDispatch", "path_params", "proxied_reply", "split_service"]

PROXY_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
log = logging.getLogger("llmagentos.gateway")


class ProxyDispatch:
    """Pure ASGI: proxied requests to ``proxy``, the rest to ``app`` (module docstring)."""

    def __init__(
        self,
        app: Any,
        *,
        registry: ServiceRegistry,
        proxy: Callable[[Request], Awaitable[Response]],
    ) -> None:
        from starlette.requests import ClientDisconnect, Request

        self.app, self.registry, self.proxy = app, registry, proxy
        self._request, self._disconnect = Request, ClientDisconnect

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in PROXY_METHODS:
            await self.app(scope, receive, send)
            return
        name, rest = split_service(scope["path"])
        if name in RESERVED_NAMES or self.registry.get(name) is None:
            await self.app(scope, receive, send)
            return
        scope["path_params"] = path_params(name, rest)
        reply = await proxied_reply(self.proxy, self._request(scope, receive), self._disconnect)
        if reply is not None:
            await reply(scope, receive, send)


def split_service(path: str) -> tuple[str, str | None]:
    """A path's service (its first segment) and the rest (``None``: nothing after it)."""
    end = path.find("/", 1)
    return (path[1:end], path[end + 1 :]) if end > 0 else (path[1:], None)


def path_params(name: str, rest: str | None) -> dict[str, str]:
    """The proxy's path parameters, as its routes would match them."""
    return {"service": name} if rest is None else {"service": name, "path": rest}


async def proxied_reply(
    proxy: Callable[[Request], Awaitable[Response]], request: Request, disconnect: type[Exception]
) -> Response | None:
    """The proxy's reply to ``request``: a 500 if it failed (logged with its trace, as
    Starlette's error middleware would), ``None`` if the client left mid-body."""
    try:
        return await proxy(request)
    except disconnect:
        # The client left before its body was in: nothing to answer, nothing failed.
        log.info("client left mid-request: %s %s", request.method, request.scope["path"][:200])
        return None
    except Exception:
        log.exception("the proxy failed on %s %s", request.method, request.scope["path"][:200])
        return problem(500, "the gateway failed on this request", secrets.token_hex(12))
