"""The gateway's own answers: access-log lines, upstream failures, an open circuit, and
its 404/405s naming the path (never a redirect or a plain-text page)."""

from __future__ import annotations

import logging
import math
import secrets
from json.encoder import encode_basestring_ascii as _quoted
from typing import TYPE_CHECKING

from llmagentos.gateway.access_log import ACCESS_LOGGER, plain_sink
from llmagentos.gateway.hop import problem
from llmagentos.gateway.registry import ServiceEntry
from llmagentos.gateway.runtime import ServiceRuntime
from llmagentos.gateway.upstream import UpstreamError, UpstreamTimeout

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["circuit_open", "failed", "log_access", "not_found", "own_path_refused"]

access_log = logging.getLogger(ACCESS_LOGGER)


def log_access(
    method: str, request_id: str, *, service: str, route: str, upstream: str,
    status: int, seconds: float, attempts: int,
) -> None:  # fmt: skip
    if access_log.isEnabledFor(logging.INFO):  # build the line only if someone reads it
        # What json.dumps writes for this dict, built directly (a quarter of its time):
        # its C string escaping, numbers as their repr.
        line = (
            f'{{"request_id": {_quoted(request_id)}, "method": {_quoted(method)}, '
            f'"service": {_quoted(service)}, "route": {_quoted(route)}, '
            f'"upstream": {_quoted(upstream)}, "status": {int(status)!r}, '
            f'"ms": {round(seconds * 1000, 2)!r}, "attempts": {int(attempts)!r}}}'
        )
        sink = plain_sink(access_log)
        if sink is not None:
            sink.add_line(line)
        else:
            access_log.info(line)


def failed(err: UpstreamError, entry: ServiceEntry, route: str, request_id: str) -> Response:
    """504 for a timeout, 502 for any other failure of a call that reached a replica."""
    if isinstance(err, UpstreamTimeout):
        limit = entry.timeout_for(route)
        return problem(504, f"{entry.name!r} did not answer within {limit:g} s", request_id)
    return problem(502, f"{entry.name!r} failed: {err}", request_id)


def circuit_open(entry: ServiceEntry, runtime: ServiceRuntime, request_id: str) -> Response:
    """503 with the breaker's own ``Retry-After``: the service is failing, no call made."""
    reply = problem(503, f"{entry.name!r} is failing; circuit open", request_id)
    reply.headers["retry-after"] = str(max(1, math.ceil(runtime.breaker.retry_after())))
    return reply


def own_path_refused(request: Request, request_id: str, *, face: bool) -> Response:
    """A gateway path the proxy route caught: 405 with ``Allow`` when another method
    would do, else 404 naming the path (the proxy would otherwise take the gateway's
    own first segment for an unknown service)."""
    from starlette.routing import Match, Route

    allowed: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and not route.path.startswith("/{service}"):
            match, _ = route.matches({**request.scope, "method": "GET"})
            if match is not Match.NONE:
                allowed |= set(route.methods or ())
    path = request.url.path
    if allowed:
        reply = problem(405, f"{request.method} is not allowed on {path}", request_id)
        reply.headers["allow"] = ", ".join(sorted(allowed))
        return reply
    if path.startswith("/v1/") and not face:
        detail = (
            f"no route {path}: the OpenAI-compatible face is off "
            "(no [[models]] or [[agents]] in the gateway's config)"
        )
        return problem(404, detail, request_id)
    return problem(404, f"no gateway route {path}", request_id)


async def not_found(request: Request, err: Exception) -> Response:
    """Starlette's own 404/405 (a path no route takes), as JSON naming the path."""
    from starlette.exceptions import HTTPException

    status = err.status_code if isinstance(err, HTTPException) else 404
    detail = f"no route {request.url.path}"
    if status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    request_id = request.headers.get("x-request-id") or secrets.token_hex(12)
    reply = problem(status, detail, request_id)
    if isinstance(err, HTTPException) and err.headers:
        reply.headers.update(err.headers)
    return reply
