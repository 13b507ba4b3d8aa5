"""What the proxy reads of each request, read cheaply: headers, the peer, new ids.

These run several times on every proxied request, where Starlette's general versions
cost more than the proxy's own work around them.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["client_host", "header", "new_id"]

_HEADER_MAP = "llmagentos.headers"  # the scope key of a request's headers by name
_KEYS: dict[str, bytes] = {}  # header names as asked for, as the scope spells them
_ID_FORMATS = {bits: f"%0{bits // 4}x" for bits in (64, 96, 128)}


def header(request: Request, name: str) -> str | None:
    """The request's first ``name`` header (any case), as Starlette's ``headers.get``
    gives it, from a map of the scope's headers made once per request: Starlette's own
    scans the list and raises inside for every header that is missing, which most of
    the gateway's look-ups are."""
    scope = request.scope
    found: dict[bytes, bytes] | None = scope.get(_HEADER_MAP)
    if found is None:
        found = {}
        for key, value in scope["headers"]:
            found.setdefault(key, value)  # the first of repeats, as Starlette's
        scope[_HEADER_MAP] = found
    key = _KEYS.get(name)
    if key is None:
        key = name.lower().encode("latin-1")
        if len(_KEYS) < 256:  # the gateway asks for a few names, again and again
            _KEYS[name] = key
    value = found.get(key)
    return None if value is None else value.decode("latin-1")


def client_host(request: Request) -> str | None:
    """The TCP peer's address (without making Starlette's ``Address`` each time)."""
    client = request.scope.get("client")
    return None if client is None else str(client[0])


def new_id(bits: int) -> str:
    """A random non-zero id in hex (``bits`` / 4 digits): request, trace and span ids.
    Not secrets (OpenTelemetry makes its ids the same way), so no system call each."""
    spec = _ID_FORMATS.get(bits) or f"%0{bits // 4}x"
    return spec % (random.getrandbits(bits) or 1)
