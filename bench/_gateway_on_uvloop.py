"""The gateway as the command line builds it, served on uvloop instead of its own loop.

The servers run on asyncio's loop (``EVENT_LOOP``, docs/gateway.md, "Overload": on
uvloop some requests wait unread for a second and more when the server is saturated).
This serves the same app, the same protocol and the same heap settings on uvloop, so
that ``bench_gateway`` measures what that loop would give the gateway in the same run
(information, not the gateway as shipped).

python -m _gateway_on_uvloop CONFIG PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from llmagentos._heap import prepare_gc_for_serving
from llmagentos._http_protocol import BOUNDED_HTTP
from llmagentos.gateway.workers import build_gateway

if __name__ == "__main__":
    app, _ = build_gateway(Path(sys.argv[1]), access_log="-")  # as shipped: to stderr
    prepare_gc_for_serving()
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", log_config=None,
        timeout_graceful_shutdown=10, proxy_headers=False, loop="uvloop", http=BOUNDED_HTTP,
        access_log=False,
    )  # fmt: skip
