"""The gateway's own work per proxied request, with no server and no network.

The gateway's ASGI app as the command line builds it (shedding, tracing, admission,
the proxy, metrics, the access log to /dev/null), driven in one event loop
with a canned replica: an upstream client that answers every request at once. What
it prints is the CPU of the gateway's code per request, apart from uvicorn, the event
loop's I/O and the hop's sockets (which ``bench_gateway`` measures with them).

``--protocol`` feeds each request's bytes to the servers' HTTP protocol instead (uvicorn's
httptools protocol as the gateway serves it, on a transport that keeps what is written):
uvicorn's parsing, its request task and its reply's head are then counted too, and only
the sockets and the loop's waiting for them are left out.

python bench/_gateway_in_process.py [REQUESTS] [--access-log off] [--protocol]
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


def _wire_request(path: str) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-length: 1\r\n\r\n"
    return head.encode() + b"x"


class _KeptTransport(asyncio.Transport):
    """A connection's transport that reads back what is written and wakes the driver on
    each whole reply (its head's ``content-length`` bytes after the head)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: set[bytes] = set()
        self.answered: asyncio.Future[None] | None = None
        self._pending = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending += bytes(data)
        head_end = self._pending.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self._pending[:head_end].lower()
        at = head.find(b"content-length: ")
        length = int(head[at + 16 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self._pending) >= head_end + 4 + length:
            self.statuses.add(self._pending[9:12])
            self._pending = b""
            if self.answered is not None and not self.answered.done():
                self.answered.set_result(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        return None

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


async def _through_protocol_us(app: Any, requests: int, path: str = "/up/echo") -> float:
    import uvicorn
    from uvicorn.server import ServerState

    from llmagentos.gateway.direct_path import GatewayHttpProtocol

    config = uvicorn.Config(
        app, log_level="warning", log_config=None, proxy_headers=False, access_log=False
    )
    loop = asyncio.get_running_loop()
    protocol = GatewayHttpProtocol(config, ServerState(), {}, _loop=loop)
    transport = _KeptTransport()
    protocol.connection_made(transport)

    request = _wire_request(path)

    async def one() -> None:
        transport.answered = loop.create_future()
        protocol.data_received(request)
        await transport.answered

    for _ in range(200):  # warm up, as above
        await one()
    if transport.statuses != {b"200"}:
        raise RuntimeError(f"the gateway answered {sorted(transport.statuses)}, not 200")
    started = time.perf_counter()
    for _ in range(requests):
        await one()
    elapsed = time.perf_counter() - started
    protocol.connection_lost(None)
    return elapsed / requests * 1e6


def main() -> None:
    args = sys.argv[1:]
    through = "--protocol" in args
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
    log = f"access log {'off' if access_log == 'off' else 'on'}"
    if not through:
        runs = [asyncio.run(_per_request_us(app, requests)) for _ in range(3)]
        print(f"gateway's own work: {_summary(runs, requests)}; {log})")
        return
    from llmagentos.gateway.testing import app as bare_app

    gateway, bare = [], []
    for _ in range(3):  # alternating, so that both see the same machine
        gateway.append(asyncio.run(_through_protocol_us(app, requests)))
        bare.append(asyncio.run(_through_protocol_us(bare_app, requests, "/echo")))
    print(f"through uvicorn's protocol, the gateway: {_summary(gateway, requests)}; {log})")
    print(f"through uvicorn's protocol, the bare app: {_summary(bare, requests)})")
    print(f"bare app / gateway: {statistics.median(bare) / statistics.median(gateway):.2f}x")


def _summary(runs: list[float], requests: int) -> str:
    return (
        f"{statistics.median(runs):.1f} us per request "
        f"(median of 3 x {requests:,}; runs {', '.join(f'{r:.1f}' for r in runs)}"
    )


if __name__ == "__main__":
    main()
