"""http_request: pinned, SSRF-checked fetches against a loopback server and mock transports."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from llmagentos.tools.http import HttpResponse, HttpToolError, HttpToolTimeout, http_request
from llmagentos.tools.ssrf import URLRefused

from .test_ssrf import PUBLIC_V4, REFUSED, fake_resolver

BIG = b"x" * 100_000
RELEASE = threading.Event()  # set at teardown so a hanging handler returns


class Handler(BaseHTTPRequestHandler):
    """Routes: /ok, /echo, /big, /hang, /r/<n> (chain), /loop, /to-private, /to-meta, /see-other."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        port = self.headers["Host"].rsplit(":", 1)[1]
        path = self.path
        if path == "/ok":
            self._send(200, "héllo".encode())
        elif path == "/echo":
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            text = f"{self.command} host={self.headers['Host']} body={data.decode()}"
            self._send(200, text.encode())
        elif path == "/big":
            self._send(200, BIG)
        elif path == "/hang":
            RELEASE.wait(10)
            self._send(200, b"late")
        elif path.startswith("/r/"):
            n = int(path[3:])
            target = "/ok" if n == 0 else f"/r/{n - 1}"
            self._send(302, headers={"Location": target})
        elif path == "/loop":
            self._send(302, headers={"Location": "/loop"})
        elif path == "/to-private":
            self._send(302, headers={"Location": f"http://10.0.0.1:{port}/ok"})
        elif path == "/to-meta":
            self._send(307, headers={"Location": "http://169.254.169.254/latest/meta-data"})
        elif path == "/to-other-loopback":
            self._send(301, headers={"Location": f"http://127.0.0.2:{port}/ok"})
        elif path == "/key":
            self._send(200, (self.headers.get("Idempotency-Key") or "none").encode())
        elif path == "/see-other":
            self._send(303, headers={"Location": "/echo"})
        else:
            self._send(404, b"nope")

    do_GET = do_POST = do_HEAD = _route


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        RELEASE.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


class Recorder(httpx.AsyncBaseTransport):
    """Delegates to a real (or mock) transport and records every request sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def never_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request may be sent, got {request.url}")


# --- refusals never reach a transport -------------------------------------------------


@pytest.mark.parametrize("url", REFUSED)
async def test_refused_before_any_request(url: str) -> None:
    recorder = Recorder(httpx.MockTransport(never_called))
    with pytest.raises(URLRefused):
        await http_request(url, resolver=fake_resolver, transport=recorder)
    assert recorder.requests == []


async def test_loopback_refused_by_default(server: str) -> None:
    recorder = Recorder()
    with pytest.raises(URLRefused, match="loopback"):
        await http_request(f"{server}/ok", transport=recorder)
    assert recorder.requests == []


# --- the real loopback server ---------------------------------------------------------


@pytest.mark.parametrize(
    "allow",
    [{"allow_private": True}, {"allow_hosts": {"127.0.0.1"}}, {"allow_hosts": ["127.0.0.0/8"]}],
)
async def test_allowed_loopback_works(server: str, allow: dict[str, object]) -> None:
    response = await http_request(f"{server}/ok", **allow)  # type: ignore[arg-type]
    assert isinstance(response, HttpResponse)
    assert response.status == 200
    assert response.text == "héllo"
    assert response.truncated is False
    assert response.url == f"{server}/ok"
    assert response.headers["content-length"] == str(len("héllo".encode()))


async def test_connects_to_pinned_ip_with_original_host_header(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])  # a rebinding resolver

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    recorder = Recorder()
    response = await http_request(
        f"http://app.test:{port}/echo",
        allow_hosts={"127.0.0.1"},
        resolver=rebinding,
        transport=recorder,
    )
    assert response.text == f"GET host=app.test:{port} body="
    assert [r.url.host for r in recorder.requests] == ["127.0.0.1"]
    assert next(answers) == ["10.9.9.9"]  # resolved exactly once


async def test_post_body(server: str) -> None:
    response = await http_request(
        f"{server}/echo", method="POST", body="a=1", allow_private=True, headers={"X-T": "1"}
    )
    assert response.text.startswith("POST ")
    assert response.text.endswith("body=a=1")


async def test_redirect_chain_followed_and_rechecked(server: str) -> None:
    recorder = Recorder()
    response = await http_request(f"{server}/r/3", allow_private=True, transport=recorder)
    assert response.status == 200
    assert response.text == "héllo"
    assert response.url == f"{server}/ok"
    assert [r.url.path for r in recorder.requests] == ["/r/3", "/r/2", "/r/1", "/r/0", "/ok"]


async def test_see_other_turns_post_into_get(server: str) -> None:
    response = await http_request(
        f"{server}/see-other", method="POST", body="secret", allow_private=True
    )
    assert response.text.startswith("GET ")
    assert response.text.endswith("body=")


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/to-private", "private"), ("/to-meta", "metadata"), ("/to-other-loopback", "loopback")],
)
async def test_redirect_to_forbidden_refused_before_the_hop(
    server: str, path: str, reason: str
) -> None:
    recorder = Recorder()
    with pytest.raises(URLRefused, match=reason) as info:
        await http_request(f"{server}{path}", allow_hosts={"127.0.0.1"}, transport=recorder)
    assert [r.url.host for r in recorder.requests] == ["127.0.0.1"]
    assert info.value.url != f"{server}{path}"  # names the hop, not the start


async def test_too_many_redirects(server: str) -> None:
    with pytest.raises(HttpToolError, match="redirects"):
        await http_request(f"{server}/loop", allow_private=True, max_redirects=3)
    with pytest.raises(HttpToolError, match="redirects"):
        await http_request(f"{server}/r/2", allow_private=True, max_redirects=1)


async def test_size_cap_truncates(server: str) -> None:
    response = await http_request(f"{server}/big", allow_private=True, max_bytes=1000)
    assert response.truncated is True
    assert response.text == "x" * 1000
    full = await http_request(f"{server}/big", allow_private=True, max_bytes=len(BIG))
    assert full.truncated is False
    assert len(full.text) == len(BIG)


async def test_timeout_against_hanging_server(server: str) -> None:
    start = time.monotonic()
    with pytest.raises(HttpToolTimeout) as info:
        await http_request(f"{server}/hang", allow_private=True, timeout=0.5)
    assert time.monotonic() - start < 3.0
    assert isinstance(info.value, TimeoutError)


async def test_connection_error_translated() -> None:
    # A closed loopback port: nothing listens there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HttpToolError):
        await http_request(f"http://127.0.0.1:{port}/", allow_private=True, timeout=2)


# --- mock transport: pinning details and redirects off a public host ------------------


async def test_https_sets_sni_and_host_while_connecting_to_ip() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    response = await http_request(
        "https://example.com/x?y=1",
        resolver=fake_resolver,
        transport=httpx.MockTransport(answer),
        headers={"Host": "evil.test"},
    )
    assert response.text == "ok"
    (request,) = seen
    assert request.url.host == PUBLIC_V4
    assert request.url.raw_path == b"/x?y=1"
    assert request.headers["host"] == "example.com"
    assert request.extensions["sni_hostname"] == "example.com"


async def test_public_redirect_to_metadata_refused() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/"})

    with pytest.raises(URLRefused, match="metadata"):
        await http_request(
            "http://example.com/",
            resolver=fake_resolver,
            transport=httpx.MockTransport(answer),
        )
    assert seen == [f"http://{PUBLIC_V4}/"]


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "http://localhost/", "http://user:pw@example.com/", "gopher://x/"],
)
async def test_redirect_to_bad_forms_refused(location: str) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(301, headers={"Location": location})

    with pytest.raises(URLRefused):
        await http_request(
            "http://example.com/", resolver=fake_resolver, transport=httpx.MockTransport(answer)
        )
    assert len(seen) == 1


async def test_credentials_dropped_on_cross_origin_redirect() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(302, headers={"Location": "http://v6.example.com/"})
        return httpx.Response(200, text="done")

    await http_request(
        "http://example.com/",
        headers={"Authorization": "Bearer t", "X-Keep": "1"},
        resolver=fake_resolver,
        transport=httpx.MockTransport(answer),
    )
    assert seen[0].headers["authorization"] == "Bearer t"
    assert "authorization" not in seen[1].headers
    assert seen[1].headers["x-keep"] == "1"
    assert seen[1].headers["host"] == "v6.example.com"


async def test_fetch_tool_through_a_gate(server: str) -> None:
    from llmagentos.durable.scope import StepScope, scope_active
    from llmagentos.llm.types import ToolCall
    from llmagentos.tools import ToolRegistry
    from llmagentos.tools.gate import ToolGate
    from llmagentos.tools.http import http_tool

    gate = ToolGate(ToolRegistry([http_tool(allow_hosts=["127.0.0.1"])]))

    def call(url: str, method: str = "GET") -> ToolCall:
        return ToolCall(
            id="c", name="web.fetch", arguments=json.dumps({"url": url, "method": method})
        )

    with scope_active(scope := StepScope(n=7)):
        ok, posted, got, meta, bad = await gate.run_calls([
            call(f"{server}/ok"), call(f"{server}/key", "POST"), call(f"{server}/key"),
            call("http://169.254.169.254/latest/meta-data"), call(f"{server}/ok", "BREW"),
        ])  # fmt: skip
    assert ok.ok and ok.value["status"] == 200 and ok.value["text"] == "héllo"
    # The call's idempotency key: <run id>/<agent>/<step>.tool.<n> (the run id is the scope's).
    assert posted.ok and posted.value["text"] == f"{scope.run_id}/agent/7.tool.1"
    assert got.ok and got.value["text"] == "none"  # GET sends none
    assert not meta.ok and "refused" in (meta.error or "")
    assert not bad.ok and "method must be one of" in (bad.error or "")
    # Without the allow-list entry, loopback is refused before any connection.
    strict = ToolGate(ToolRegistry([http_tool()]))
    (refused,) = await strict.run_calls([call(f"{server}/ok")])
    assert not refused.ok and "loopback" in (refused.error or "")
