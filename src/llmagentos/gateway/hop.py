"""What crosses the hop between the gateway and a replica, and what never does.

Request headers go on without hop-by-hop ones and without anything that vouches for
the caller: ``Authorization``, ``Proxy-Authorization``, ``Cookie``, API key headers and
any ``X-LLMAgentOS-Principal`` a client made up (names compared case-insensitively,
``_`` taken as ``-``, since some servers read them so). The only word on who calls is
the principal the gateway signs itself. Replies come back without hop-by-hop headers,
a stream piece by piece.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmagentos.gateway.request_fields import client_host, new_id
from llmagentos.gateway.upstream import UpstreamReply
from llmagentos.principal import PRINCIPAL_HEADER, Principal, PrincipalSigner
from llmagentos.telemetry.propagation import TRACE_HEADERS, inject
from llmagentos.telemetry.state import TELEMETRY
from llmagentos.telemetry.trace_context import clean_trace_headers, clean_tracestate

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "CREDENTIAL_HEADERS",
    "hop_by_hop",
    "problem",
    "reply_from",
    "trace_headers",
    "upstream_headers",
]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length",
    "expect",  # the gateway has read the body already: nothing to wait for upstream
})  # fmt: skip
#: Headers that vouch for the caller: the gateway reads them, no replica ever sees them.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", PRINCIPAL_HEADER}
)


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def hop_by_hop(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The standard hop-by-hop headers plus any the message's ``Connection`` names."""
    named: set[str] = set()
    for name, value in headers:
        # The length first: most messages have no Connection header to find.
        if len(name) == 10 and name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(","))
    return HOP_BY_HOP | named if named else HOP_BY_HOP


#: Headers the gateway writes itself on the hop (the client's are replaced).
_SET_HERE = frozenset({"x-request-id", "x-forwarded-for", *TRACE_HEADERS})
#: What the hop drops from a request that names no more in ``Connection`` (made once).
_NOT_SENT_ON = HOP_BY_HOP | _SET_HERE
#: What a reply that names no more in ``Connection`` loses: the gateway's own server
#: writes Date and Server (the replica's would repeat them, and tell the client what
#: runs behind the gateway), and the request id is the gateway's.
_NOT_RELAYED = HOP_BY_HOP | {"x-request-id", "date", "server"}


def trace_headers(incoming: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The hop's trace context: exactly one well-formed ``traceparent`` whose parent is
    the gateway's own span, and a valid ``tracestate`` of at most 512 characters.

    With telemetry on, that span is the gateway's exported server span (already a child
    of the caller's checked context); off, a fresh span id in the caller's trace, or a
    new trace when the caller's ``traceparent`` was missing or malformed.
    """
    if TELEMETRY.on:
        carrier = inject({})
        if "traceparent" in carrier:
            state = clean_tracestate([carrier.get("tracestate", "")])
            out = [("traceparent", carrier["traceparent"])]
            return [*out, ("tracestate", state)] if state else out
    parent, state = clean_trace_headers(incoming)
    span = new_id(64)
    if parent is None:
        return [("traceparent", f"00-{new_id(128)}-{span}-01")]
    out = [("traceparent", parent.header(span))]
    return [*out, ("tracestate", state)] if state else out


def upstream_headers(
    request: Request, request_id: str, *, credential_headers: frozenset[str] = CREDENTIAL_HEADERS
) -> list[tuple[str, str]]:
    """The client's headers for the hop (repeats kept; hop-by-hop and credential ones
    dropped), with the request id, the next span of the trace and the client added to
    ``X-Forwarded-For``."""
    # ASGI servers give header names in lower case, as bytes ("should", says ASGI: a
    # server that does not must not get a credential past the checks below).
    pairs = [
        (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"]
    ]
    named = hop_by_hop(pairs)
    drop = _NOT_SENT_ON if named is HOP_BY_HOP else named | _SET_HERE
    chain = None
    headers = []
    trace: list[tuple[str, str]] = []  # the caller's trace context, read below
    for name, value in pairs:
        if name in drop:
            if name == "x-forwarded-for":
                chain = value if chain is None else f"{chain}, {value}"
            elif name in TRACE_HEADERS:
                trace.append((name, value))
            continue
        if name in credential_headers or ("_" in name and _canonical(name) in credential_headers):
            continue
        headers.append((name, value))
    headers.append(("x-request-id", request_id))
    headers += trace_headers(trace)
    host = client_host(request)
    if host is not None:
        chain = f"{chain}, {host}" if chain else host
    if chain:
        headers.append(("x-forwarded-for", chain))
    return headers


async def _relay(
    pieces: AsyncGenerator[bytes, None], on_end: Callable[[], None]
) -> AsyncIterator[bytes]:
    try:
        async for piece in pieces:
            yield piece
    finally:
        await pieces.aclose()  # the upstream connection is released or closed now
        on_end()


@functools.lru_cache(maxsize=1024)
def path_prefix(url: str) -> str:
    """The path a replica URL puts before every route (``""`` for none)."""
    return urlsplit(url).path


def raw_target(scope: Mapping[str, Any]) -> str:
    """The route and query as the client sent them (still percent-encoded): the raw
    path after the service's segment, and ``?query`` when there is one."""
    raw = bytes(scope["raw_path"]).decode("latin-1")
    _, _, rest = raw[1:].partition("/")
    query = scope.get("query_string", b"")
    return "/" + rest + ("?" + query.decode("latin-1") if query else "")


def signed_headers(
    headers: list[tuple[str, str]],
    signer: PrincipalSigner | None,
    principal: Principal | None,
    *,
    method: str,
    url: str,
    target: str,
    body: bytes,
) -> list[tuple[str, str]]:
    """``headers`` with ``principal`` signed for exactly this hop (to the replica at
    ``url``), when auth is on."""
    if signer is None or principal is None:
        return headers
    signed = signer.sign(principal, method=method, target=path_prefix(url) + target, body=body)
    return [*headers, (PRINCIPAL_HEADER, signed)]


def _length(value: str | None) -> dict[str, str] | None:
    return None if value is None else {"content-length": value}


@functools.cache
def _relayed() -> Callable[[int, list[tuple[bytes, bytes]], bytes], Response]:
    """The whole-reply class (made on first use: Starlette is the gateway's extra)."""
    from starlette.responses import Response

    class RelayedReply(Response):
        """A replica's whole answer, its head already made: Starlette's ``Response``
        without the rendering and header rebuilding its constructor does (a tenth of
        the gateway's own work on a request)."""

        def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes):
            self.status_code, self.raw_headers, self.body = status, raw_headers, body
            self.background = None

    return RelayedReply


def reply_from(
    answer: UpstreamReply, request_id: str, *, on_end: Callable[[], None], head: bool = False
) -> Response:
    """The replica's answer for the client: hop-by-hop headers dropped, repeats kept; a
    streamed answer passed on piece by piece (``on_end`` when it is over)."""
    raw: list[tuple[bytes, bytes]]
    if answer.stream is not None or head:
        from starlette.responses import Response, StreamingResponse

        reply: Response
        if answer.stream is not None:
            reply = StreamingResponse(_relay(answer.stream, on_end), status_code=answer.status)
        else:  # no body, but the length the body would have: the replica's own
            length = next((v for k, v in answer.headers if k.lower() == "content-length"), None)
            reply = Response(status_code=answer.status, headers=_length(length))
        raw = reply.raw_headers
    else:
        status, content = answer.status, answer.content
        # As Starlette's Response: a length, but not on a reply that has no body.
        sized = status >= 200 and status not in (204, 304)
        raw = [(b"content-length", str(len(content)).encode())] if sized else []
        reply = _relayed()(status, raw, content)
    named = hop_by_hop(answer.headers)
    drop = _NOT_RELAYED if named is HOP_BY_HOP else named | _NOT_RELAYED
    for name, value in answer.headers:
        lowered = name.lower()
        if lowered not in drop:
            raw.append((lowered.encode("latin-1"), value.encode("latin-1")))
    raw.append((b"x-request-id", request_id.encode()))
    return reply


def problem(status: int, detail: str, request_id: str, *, field: str = "") -> Response:
    """The gateway's own refusal: ``{"detail", "field"?}`` with the request id."""
    from starlette.responses import JSONResponse

    headers = {"x-request-id": request_id}
    if status == 503:
        headers["retry-after"] = "1"
    content: dict[str, str] = {"detail": detail}
    if field:
        content["field"] = field
    return JSONResponse(content, status_code=status, headers=headers)


def problem_bytes(status: int, detail: str, field: str = "") -> bytes:
    """The body of :func:`problem`, for the ASGI admission layer that has no Starlette."""
    content: dict[str, str] = {"detail": detail}
    if field:
        content["field"] = field
    return json.dumps(content).encode()
