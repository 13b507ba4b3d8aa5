"""The gateway's own work per proxied request, with no server and no network.

The gateway's ASGI app as the command line builds it (shedding, tracing, admission,
the proxy, metrics, the access log to /dev/null), driven in one event loop
with a canned replica: an upstream client that answers every request at once. What
it prints is the CPU of the gateway's code per request, apart from uvicorn, the event
loop's I/O and the hop's sockets (which ``bench_gateway`` measures with them).

python bench/_gateway_in_process.py [REQUESTS] [--access-log off]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llmagentos.gateway.upstream import Headers, UpstreamReply
from llmagentos.gateway.workers import build_gateway
from llmagentos.load_shedding import BODY_IN

_BODY = b'{"method":"POST","body":"x","headers":{}}'
_SCOPE = {
    "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
    "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5555), "scheme": "http",
    "method": "POST", "root_path": "", "path": "/up/echo", "raw_path": b"/up/echo",
    "query_string": b"", "headers": [(b"host", b"127.0.0.1:8000"), (b"content-length", b"1")],
    BODY_IN: True,  # as the servers' protocol marks a body that came with its head
}  # fmt: skip


class CannedReplica:
    """An upstream client answering every request at once with the echo app's reply."""

    async def request(
        self, method: str, url: str, *, body: bytes, headers: Headers, timeout: float,
        replayable: bool = False,
    ) -> UpstreamReply:  # fmt: skip
        pairs = [("content-length", str(len(_BODY))), ("content-type", "application/json")]
        return UpstreamReply(200, pairs, _BODY)

    async def aclose(self) -> None:
        return None


async def _per_request_us(app: Any, requests: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(200):  # warm up: the middleware stack is built on the first request
        await app(dict(_SCOPE), receive, send)
    if set(statuses) != {200}:
        raise RuntimeError(f"the gateway answered {sorted(set(statuses))}, not 200")
    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(_SCOPE), receive, send)
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    args = sys.argv[1:]
    access_log = "off" if "off" in args else "/dev/null"  # on, its lines discarded
    requests = int(next((a for a in args if a.isdigit()), "20000"))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gateway.toml"
        config.write_text(
            '[gateway]\nhealth_interval = 0\n[[services]]\nname = "up"\n'
            'replicas = ["http://127.0.0.1:9"]\n'
        )
        app, _ = build_gateway(config, access_log=access_log)
    app.state.gateway.upstream = CannedReplica()
    runs = [asyncio.run(_per_request_us(app, requests)) for _ in range(3)]
    print(
        f"gateway's own work: {statistics.median(runs):.1f} us per proxied request "
        f"(median of 3 x {requests:,}; runs {', '.join(f'{r:.1f}' for r in runs)}; "
        f"access log {'off' if access_log == 'off' else 'on'})"
    )


if __name__ == "__main__":
    main()
