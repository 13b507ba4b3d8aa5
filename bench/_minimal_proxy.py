"""The least a Python reverse proxy costs here: the gateway's floor in bench_gateway.

A raw ASGI app on uvicorn (httptools, and the gateway's event loop) that
sends each request on to ``UPSTREAM`` with aiohttp (the gateway's client, one pooled
session) and hands the reply back: no routing table, no checks, no metrics, no
logging, no retries. What it costs per request is what any proxy built on this stack
pays before doing any of the gateway's work.

python -m _minimal_proxy PORT   (UPSTREAM=http://127.0.0.1:N in the environment)
"""

from __future__ import annotations

import os
import sys
from typing import Any

import aiohttp
import uvicorn

from llmagentos.load_shedding import EVENT_LOOP

UPSTREAM = os.environ.get("UPSTREAM", "")
_HOP = frozenset({b"host", b"content-length", b"connection"})
_DROPPED = frozenset({"transfer-encoding", "connection", "date", "server"})
_SESSION: dict[str, aiohttp.ClientSession] = {}  # made in the server's loop, once


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to start
    session = _SESSION.get("")
    if session is None:
        connector = aiohttp.TCPConnector(limit=0)
        session = _SESSION[""] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"]
    rest = path[path.find("/", 1) :] if path.count("/") > 1 else path  # /up/echo -> /echo
    headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in _HOP]
    async with session.request(
        scope["method"], UPSTREAM + rest, data=body, headers=headers
    ) as reply:
        data = await reply.read()
        out = [
            (k.lower().encode(), v.encode())
            for k, v in reply.headers.items()
            if k.lower() not in _DROPPED
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
        lifespan="off", loop=EVENT_LOOP,
    )  # fmt: skip
