"""A small upstream for gateway tests and benchmarks: fast, slow and failing routes.

python -m llmagentos.gateway.testing PORT
"""

from __future__ import annotations

import asyncio
import gzip
import sys
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

# requests: every request this process received, but the gateway's own probes (its
# health checks, its fetch of route templates) and the tests' reads of these counts.
COUNTS = {"calls": 0, "requests": 0}
_PROBES = frozenset({"/readyz", "/openapi.json", "/calls"})


async def ready(request: Request) -> Response:
    return JSONResponse({"status": "ready"})


async def echo(request: Request) -> Response:
    COUNTS["calls"] += 1
    body = await request.body()
    headers = {k: v for k, v in request.headers.items() if k.startswith(("x-", "trace"))}
    return JSONResponse({"method": request.method, "body": body.decode(), "headers": headers})


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("s", "1.5")))
    return PlainTextResponse("slow done")


async def flaky(request: Request) -> Response:
    # Fails every other call: a 50% failing upstream.
    COUNTS["calls"] += 1
    if COUNTS["calls"] % 2:
        return PlainTextResponse("boom", status_code=500)
    return PlainTextResponse("ok")


async def status(request: Request) -> Response:
    # Answers with the status in the path, counting the call: /status/500, /status/418.
    COUNTS["calls"] += 1
    code = int(request.path_params["code"])
    return PlainTextResponse(f"status {code}", status_code=code)


async def inspect(request: Request) -> Response:
    # Exactly what arrived: the raw path and query string, every header (repeats kept)
    # and the body, so a test can check a signed principal against them; and the peer
    # (host:port), which tells one connection of the gateway's from another.
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]]
    query = request.scope["query_string"].decode("latin-1")
    peer = request.scope.get("client") or ("", 0)
    return JSONResponse({
        "method": request.method, "raw_path": request.scope["raw_path"].decode("latin-1"),
        "query": query, "headers": headers, "body": (await request.body()).decode("latin-1"),
        "peer": f"{peer[0]}:{peer[1]}",
    })  # fmt: skip


async def compressed(request: Request) -> Response:
    # A gzip body with two cookies: what a proxy must pass on untouched.
    reply = Response(gzip.compress(b"squeezed " * 50), media_type="text/plain")
    reply.headers["content-encoding"] = "gzip"
    reply.raw_headers += [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    return reply


async def chat(request: Request) -> Response:
    # A minimal OpenAI-compatible model that always answers "pong" (benchmarks).
    body = await request.json()
    return JSONResponse({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0,
        "model": body.get("model", "mock"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "pong"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    })  # fmt: skip


NEXT = asyncio.Event()


async def events(request: Request) -> Response:
    # Server-sent events, one per POST /sse/next: a proxy that buffers never shows the
    # first one, because the second waits on the client.
    count = int(request.query_params.get("n", "3"))

    async def produce() -> AsyncIterator[bytes]:
        for index in range(count):
            yield f"data: {index}\n\n".encode()
            await NEXT.wait()
            NEXT.clear()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(produce(), media_type="text/event-stream")


async def next_event(request: Request) -> Response:
    NEXT.set()
    return PlainTextResponse("ok")


async def calls(request: Request) -> Response:
    return JSONResponse(COUNTS)


everything = ["GET", "POST", "PUT", "PATCH", "DELETE"]
routes = Starlette(routes=[
    Route("/readyz", ready), Route("/echo", echo, methods=["GET", "POST", "PUT"]),
    Route("/slow", slow), Route("/flaky", flaky, methods=["GET", "POST"]), Route("/calls", calls),
    Route("/status/{code:int}", status, methods=["GET", "POST"]), Route("/nap", slow),
    Route("/inspect", inspect, methods=everything), Route("/gzip", compressed),
    Route("/inspect/{rest:path}", inspect, methods=everything),
    Route("/v1/chat/completions", chat, methods=["POST"]),
    Route("/sse", events), Route("/sse/next", next_event, methods=["POST"]),
])  # fmt: skip


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The routes, with every HTTP request counted (what reached this replica at all)."""
    if scope["type"] == "http" and scope["path"] not in _PROBES:
        COUNTS["requests"] += 1
    await routes(scope, receive, send)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                timeout_graceful_shutdown=10)  # fmt: skip
