"""The minimal proxy of ``_minimal_proxy`` on a faster server stack: granian (its HTTP
server is Rust, hyper and tokio) through RSGI, granian's own interface, which skips
ASGI's message dicts. The client hop is the same aiohttp session. What it gains over
the uvicorn floor is what a faster server stack could give any Python proxy here.

python -m _minimal_rsgi_proxy PORT   (UPSTREAM=http://127.0.0.1:N in the environment,
LOOP=asyncio or uvloop, default the gateway's; needs ``granian``, in the ``bench`` extra)
"""

from __future__ import annotations

import os
import sys
from typing import Any

import aiohttp

from llmagentos.load_shedding import EVENT_LOOP

UPSTREAM = os.environ.get("UPSTREAM", "")
_HOP = frozenset({"host", "content-length", "connection"})
_DROPPED = frozenset({"transfer-encoding", "connection", "date", "server", "content-length"})
_SESSION: dict[str, aiohttp.ClientSession] = {}  # made in the server's loop, once


async def app(scope: Any, protocol: Any) -> None:
    session = _SESSION.get("")
    if session is None:
        connector = aiohttp.TCPConnector(limit=0)
        session = _SESSION[""] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    body = await protocol()
    path = scope.path
    rest = path[path.find("/", 1) :] if path.count("/") > 1 else path  # /up/echo -> /echo
    headers = [(k, v) for k, v in scope.headers.items() if k not in _HOP]
    async with session.request(scope.method, UPSTREAM + rest, data=body, headers=headers) as reply:
        data = await reply.read()
        out = [(k, v) for k, v in reply.headers.items() if k.lower() not in _DROPPED]
        protocol.response_bytes(reply.status, out, data)


if __name__ == "__main__":
    from granian import Granian
    from granian.constants import Interfaces, Loops

    Granian(
        "_minimal_rsgi_proxy:app", address="127.0.0.1", port=int(sys.argv[1]),
        interface=Interfaces.RSGI, workers=1, loop=Loops(os.environ.get("LOOP", EVENT_LOOP)),
        log_enabled=False,
    ).serve()  # fmt: skip
