"""Which requests the gateway's protocol serves directly, and which it leaves to the
ASGI stack: a real uvicorn server on a thread, raw sockets, a canned replica; each
request is answered either way, and the way taken is counted."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

from llmagentos.gateway.direct_path import GatewayHttpProtocol, gateway_of
from llmagentos.gateway.upstream import Headers, UpstreamReply
from llmagentos.gateway.workers import build_gateway
from llmagentos.telemetry.state import TELEMETRY
from tests.threaded_server import serving

SERVED: list[str] = []  # the way each request went: "direct" or "stack"


class CountingProtocol(GatewayHttpProtocol):
    async def _serve(self, exchange: Any) -> None:
        SERVED.append("direct")
        await super()._serve(exchange)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.cycle is not self._pending:
            SERVED.append("stack")


class CannedReplica:
    async def request(
        self, method: str, url: str, *, body: bytes, headers: Headers, timeout: float,
        replayable: bool = False,
    ) -> UpstreamReply:  # fmt: skip
        content = b"%s %s %d" % (method.encode(), url.encode(), len(body))
        return UpstreamReply(200, [("content-length", str(len(content)))], content)

    async def aclose(self) -> None:
        return None


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    config = Path(tmp_path_factory.mktemp("choice")) / "gw.toml"
    config.write_text(
        "[gateway]\nhealth_interval = 0\nmax_body_bytes = 100\n\n"
        '[[services]]\nname = "up"\nreplicas = ["http://127.0.0.1:9"]\n'
    )
    app, _ = build_gateway(config, access_log="off")
    gateway = gateway_of(app)
    assert gateway is not None
    gateway.upstream = CannedReplica()
    # As the command line serves it: no proxy-headers wrapper (with one, uvicorn's
    # middleware must see every request, and the protocol leaves them all to the stack).
    with serving(app, http=CountingProtocol, loop="asyncio", proxy_headers=False) as chosen:
        yield chosen


def _way(port: int, request: bytes) -> tuple[str, int]:
    SERVED.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += raw.recv(65536)
    assert len(SERVED) == 1, SERVED
    return SERVED[0], int(answer.split(b" ", 2)[1])


def _head(first: str, *headers: str) -> bytes:
    return (first + "\r\nhost: g\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode()


@pytest.mark.parametrize(
    "request_bytes",
    [
        _head("GET /up/x HTTP/1.1"),
        _head("POST /up/x?q=1 HTTP/1.1", "content-length: 3") + b"abc",
        _head("DELETE /up HTTP/1.1"),
        _head("GET /up/a%20b HTTP/1.1"),
        _head("POST /up/x HTTP/1.1", "content-length: 100") + b"x" * 100,  # at the limit
    ],
    ids=["get", "post-with-body", "bare-service", "encoded-path", "body-at-the-limit"],
)
def test_whole_proxied_requests_go_direct(port: int, request_bytes: bytes) -> None:
    assert _way(port, request_bytes) == ("direct", 200)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            _head("POST /up/x HTTP/1.1", "transfer-encoding: chunked") + b"3\r\nabc\r\n0\r\n\r\n",
            200,
        ),
        (_head("GET /up/x HTTP/1.0"), 200),
        (_head("POST /up/x HTTP/1.1", "content-length: 3", "expect: 100-continue"), 100),
        (_head("POST /up/x HTTP/1.1", "content-length: 101") + b"x" * 101, 413),
        (_head("GET /healthz HTTP/1.1"), 200),
        (_head("GET /nobody/x HTTP/1.1"), 404),
        (_head("GET /gateway/services HTTP/1.1"), 200),
        (_head("TRACE /up/x HTTP/1.1"), 405),
    ],
    ids=[
        "chunked",
        "http-1.0",
        "expect-continue",
        "over-the-body-limit",
        "probe",
        "unknown-service",
        "admin-route",
        "other-method",
    ],
)
def test_everything_else_goes_through_the_stack(
    port: int, request_bytes: bytes, status: int
) -> None:
    assert _way(port, request_bytes) == ("stack", status)


def test_behind_a_wrapper_everything_goes_through_the_stack(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('[[services]]\nname = "up"\nreplicas = ["http://127.0.0.1:9"]\n')
    app, _ = build_gateway(config, access_log="off")
    app.state.gateway.upstream = CannedReplica()
    with serving(app, http=CountingProtocol, loop="asyncio", proxy_headers=True) as chosen:
        assert _way(chosen, _head("GET /up/x HTTP/1.1")) == ("stack", 200)


def test_traced_requests_go_through_the_stack(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TELEMETRY, "on", True)  # the tracing middleware makes their spans
    way, _ = _way(port, _head("GET /up/x HTTP/1.1"))
    assert way == "stack"
