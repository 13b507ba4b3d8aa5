"""The least a Python reverse proxy costs here: the gateway's floor in bench_gateway.

A raw ASGI app on uvicorn (httptools, and the gateway's event loop) that
sends each request on to ``UPSTREAM`` with aiohttp (the gateway's client, one pooled
session) and hands the reply back: no routing table, no checks, no metrics, no
logging, no retries. What it costs per request is what any proxy built on this stack
pays before doing any of the gateway's work.

``CLIENT=http1`` sends the hop with the gateway's own hop client instead
(:class:`~llmagentos.gateway.http1_hop.Http1Upstream`: keep-alive HTTP/1.1 on httptools),
the floor of a proxy with the gateway's hop; ``CLIENT=pyreqwest`` with pyreqwest (Rust's
reqwest and hyper, one pooled client): what another HTTP client would change. ``LOOP``
(``asyncio``, ``uvloop``) serves on that loop instead of the gateway's.

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
CLIENT = os.environ.get("CLIENT", "aiohttp")
_HOP = frozenset({b"host", b"content-length", b"connection"})
_DROPPED = frozenset({"transfer-encoding", "connection", "date", "server"})
_SESSION: dict[str, Any] = {}  # made in the server's loop, once


async def _body(receive: Any) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _reply_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    return [
        (k.lower().encode(), v.encode()) for k, v in headers.items() if k.lower() not in _DROPPED
    ]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to start
    if CLIENT == "pyreqwest":
        await _reqwest_hop(scope, receive, send)
        return
    if CLIENT == "http1":
        await _http1_hop(scope, receive, send)
        return
    session = _SESSION.get("")
    if session is None:
        connector = aiohttp.TCPConnector(limit=0)
        session = _SESSION[""] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    body = await _body(receive)
    path = scope["path"]
    rest = path[path.find("/", 1) :] if path.count("/") > 1 else path  # /up/echo -> /echo
    headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in _HOP]
    async with session.request(
        scope["method"], UPSTREAM + rest, data=body, headers=headers
    ) as reply:
        data = await reply.read()
        out = _reply_headers(reply.headers)
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": data})


async def _http1_hop(scope: dict[str, Any], receive: Any, send: Any) -> None:
    from llmagentos.gateway.http1_hop import Http1Upstream

    client = _SESSION.get("http1")
    if client is None:
        client = _SESSION["http1"] = Http1Upstream()
    body = await _body(receive)
    path = scope["path"]
    rest = path[path.find("/", 1) :] if path.count("/") > 1 else path
    headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in _HOP]
    reply = await client.request(scope["method"], UPSTREAM + rest, body=body, headers=headers,
                                 timeout=30)  # fmt: skip
    out = [(k.lower().encode(), v.encode()) for k, v in reply.headers if k.lower() not in _DROPPED]
    await send({"type": "http.response.start", "status": reply.status, "headers": out})
    await send({"type": "http.response.body", "body": reply.content})


async def _reqwest_hop(scope: dict[str, Any], receive: Any, send: Any) -> None:
    from pyreqwest.client import ClientBuilder

    client = _SESSION.get("reqwest")
    if client is None:
        client = _SESSION["reqwest"] = await ClientBuilder().build().__aenter__()
    body = await _body(receive)
    path = scope["path"]
    rest = path[path.find("/", 1) :] if path.count("/") > 1 else path
    request = client.request(scope["method"], UPSTREAM + rest).body_bytes(body)
    for k, v in scope["headers"]:
        if k not in _HOP:
            request = request.header(k.decode(), v.decode())
    async with request.build_streamed() as reply:
        data = (await reply.bytes()).to_bytes()  # its Bytes, as bytes for the transport
        out = _reply_headers(reply.headers)
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
        lifespan="off", loop=os.environ.get("LOOP", EVENT_LOOP),
    )  # fmt: skip
