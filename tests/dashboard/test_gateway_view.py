"""The dashboard's view of a gateway: a real ``llmagentos gateway`` process (with a key
store and an admin key) in front of a real upstream process, and small raw servers that
are down, silent or answer garbage, which must give a view with a problem, not raise."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llmagentos._processes import free_port, start_server, stop_processes
from llmagentos.dashboard.gateway_view import GatewayWatcher
from llmagentos.exceptions import ConfigError
from llmagentos.gateway import ApiKeyStore

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")
pytest.importorskip("prometheus_client", reason="needs llmagentos[gateway]")

ROOT = Path(__file__).resolve().parents[2]
SECRET = "dashboard-test-principal-secret-0123456789"
ENV = {**os.environ, "LLMAGENTOS_PRINCIPAL_SECRET": SECRET, "PYTHONPATH": str(ROOT / "src")}
WRONG_KEY = "lak_0123456789ab_" + "x" * 32  # well formed, never issued


@dataclass(frozen=True)
class Live:
    url: str  # the gateway
    upstream: str  # its one replica of "echo"
    admin_key: str
    service_key: str  # echo:* for the proxied calls


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    upstream, upstream_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
    folder = tmp_path_factory.mktemp("gateway")
    keys = ApiKeyStore(folder / "keys.db", scrypt_n=2**10)
    admin, service = keys.create_key(None, admin=True), keys.create_key("ops", ["echo:*"])
    keys.close()
    config = folder / "gateway.toml"
    config.write_text(f'[gateway]\nkeys = "keys.db"\nhealth_interval = 0\n\n'
                      f'[[services]]\nname = "echo"\nreplicas = ["{upstream_url}"]\n')  # fmt: skip
    try:
        gateway, url = start_server(["llmagentos", "gateway", str(config)], env=ENV)
    except BaseException:
        stop_processes(upstream)
        raise
    yield Live(url, upstream_url, admin, service)
    stop_processes(gateway, upstream)


@pytest.fixture
async def watcher(live: Live) -> AsyncIterator[GatewayWatcher]:
    watching = GatewayWatcher(live.url, admin_key=live.admin_key)
    yield watching
    await watching.aclose()


async def _call(live: Live, path: str, times: int = 1) -> list[int]:
    headers = {"authorization": f"Bearer {live.service_key}"}
    async with httpx.AsyncClient(base_url=live.url, headers=headers, timeout=10) as client:
        return [(await client.get(path)).status_code for _ in range(times)]


async def test_services_are_listed_with_their_replicas_and_breaker(
    live: Live, watcher: GatewayWatcher
) -> None:
    view = await watcher.fetch()
    assert view.reachable and view.healthy is True and view.ready is True
    assert view.problem is None and view.admin
    assert [service.name for service in view.services] == ["echo"]
    echo = view.services[0]
    assert echo.breaker == "closed" and echo.timeout == 30.0
    assert [replica.url for replica in echo.replicas] == [live.upstream]
    assert echo.requests_per_second is None and view.window_seconds is None  # first fetch
    data = view.to_dict()
    assert data["services"][0]["replicas"][0]["url"] == live.upstream
    assert live.admin_key not in repr(data) and live.admin_key not in repr(watcher)


async def test_requests_through_the_gateway_are_counted_per_second(
    live: Live, watcher: GatewayWatcher
) -> None:
    first = await watcher.fetch()
    assert await _call(live, "/echo/echo", times=12) == [200] * 12
    second = await watcher.fetch()
    assert second.problem is None and [s.name for s in second.services] == ["echo"]
    before, after = first.services[0], second.services[0]
    assert after.requests >= before.requests + 12
    assert after.requests_per_second is not None and after.requests_per_second > 0
    assert second.window_seconds is not None and second.window_seconds > 0
    assert after.error_rate == 0.0
    assert after.p50_ms is not None and after.p99_ms is not None
    assert 0 < after.p50_ms <= after.p99_ms
    assert after.routes == []  # this upstream has no OpenAPI to learn route templates from
    (replica,) = after.replicas
    assert replica.known and replica.available and replica.healthy and replica.in_flight == 0
    assert replica.attempts >= 12
    # Nothing in the next window: no rate to speak of, no quantiles.
    third = await watcher.fetch()
    assert third.services[0].requests_per_second == 0.0
    assert third.services[0].p50_ms is None and third.services[0].error_rate is None


async def test_a_5xx_from_the_upstream_counts_as_an_error(
    live: Live, watcher: GatewayWatcher
) -> None:
    first = (await watcher.fetch()).services[0]
    assert await _call(live, "/echo/status/500") == [500]
    assert await _call(live, "/echo/status/404") == [404]
    after = (await watcher.fetch()).services[0]
    assert after.errors == first.errors + 1
    assert after.client_errors == first.client_errors + 1
    assert after.error_rate == pytest.approx(0.5)
    assert after.breaker == "closed"  # one failure opens no breaker


@pytest.mark.parametrize(
    ("key", "status", "words"),
    [(WRONG_KEY, 401, "refused the admin key"), ("service", 403, "refused the admin key"),
     (None, 401, "without an admin key")],
)  # fmt: skip
async def test_a_refused_admin_key_still_shows_health_and_metrics(
    live: Live, key: str | None, status: int, words: str
) -> None:
    await _call(live, "/echo/echo", times=2)
    watching = GatewayWatcher(live.url, admin_key=live.service_key if key == "service" else key)
    try:
        view = await watching.fetch()
    finally:
        await watching.aclose()
    assert view.reachable and view.healthy is True and view.ready is True
    assert view.problem is not None and f"({status})" in view.problem and words in view.problem
    assert not view.admin
    # The services still come from /readyz, their traffic from /metrics.
    (echo,) = view.services
    assert echo.name == "echo" and echo.requests >= 2 and echo.replicas == []


async def test_nothing_listening_is_unreachable_at_once() -> None:
    watching = GatewayWatcher(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    started = time.monotonic()
    try:
        view = await watching.fetch()
    finally:
        await watching.aclose()
    assert time.monotonic() - started < 1.0 + 1.0
    assert not view.reachable and view.healthy is None and view.services == []
    assert view.problem is not None and "nothing answers" in view.problem
    assert view.to_dict()["reachable"] is False


async def test_a_silent_gateway_gives_up_within_the_timeout() -> None:
    # Accepts connections (the kernel does, into the backlog) and never answers.
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        port = listening.getsockname()[1]
        watching = GatewayWatcher(f"http://127.0.0.1:{port}", timeout=0.5)
        started = time.monotonic()
        try:
            view = await watching.fetch()
        finally:
            await watching.aclose()
        assert time.monotonic() - started < 0.5 + 1.0
    assert not view.reachable
    assert view.problem is not None and "did not answer within 0.5 s" in view.problem


# -- raw servers that answer wrongly ------------------------------------------------------


@pytest.fixture
async def raw_server() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """A server that answers each path's raw bytes (what follows is the whole reply),
    ``b""`` for an empty 200; the test fills in the dict."""
    replies: dict[str, bytes] = {}

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            writer.write(replies.get(path, _http(404, b"no")))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", replies
    finally:
        server.close()
        await server.wait_closed()


def _http(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


GATEWAY_METRICS = b"""# HELP llmagentos_gateway_requests_total Proxied requests
# TYPE llmagentos_gateway_requests_total counter
llmagentos_gateway_requests_total{route="/x",service="svc",status="200",upstream="u"} 3.0
llmagentos_gateway_requests_total{route="/x",service="svc",status="503",upstream="-"} 1.0
"""


async def test_garbage_on_metrics_is_a_problem_not_an_exception(
    raw_server: tuple[str, dict[str, bytes]],
) -> None:
    url, replies = raw_server
    garbage = b"<html><body>not metrics {{{</body></html>"
    for path in ("/healthz", "/readyz", "/metrics", "/gateway/services"):
        replies[path] = _http(200, garbage)
    watching = GatewayWatcher(url, timeout=1.0)
    try:
        view = await watching.fetch()
    finally:
        await watching.aclose()
    assert view.reachable and view.healthy is True and view.services == []
    assert view.problem is not None
    assert "/metrics is not Prometheus text" in view.problem
    assert "/readyz answered something that is not JSON" in view.problem
    assert "/gateway/services answered something that is not JSON" in view.problem


@pytest.mark.parametrize(
    ("listing", "words"),
    [(b'{"services": [', "not JSON"), (b'{"services": [1, 2]}', "is not {"),
     (b"[]", "is not {")],
)  # fmt: skip
async def test_a_malformed_admin_listing_falls_back_to_readyz_and_metrics(
    raw_server: tuple[str, dict[str, bytes]], listing: bytes, words: str
) -> None:
    url, replies = raw_server
    replies["/healthz"] = _http(200, b'{"status": "ok"}')
    replies["/readyz"] = _http(503, b'{"detail": "warming up"}')
    replies["/metrics"] = _http(200, GATEWAY_METRICS)
    replies["/gateway/services"] = _http(200, listing, {"content-type": "application/json"})
    watching = GatewayWatcher(url, timeout=1.0)
    try:
        view = await watching.fetch()
    finally:
        await watching.aclose()
    assert view.reachable and view.healthy is True and view.ready is False
    assert view.problem is not None and words in view.problem and "warming up" in view.problem
    (svc,) = view.services  # from the metrics' labels, as neither route named any
    assert (svc.name, svc.requests, svc.errors, svc.error_rate) == ("svc", 4.0, 1.0, 0.25)
    assert svc.p50_ms is None  # no histogram in those metrics


async def test_metrics_of_something_else_and_no_http_at_all(
    raw_server: tuple[str, dict[str, bytes]],
) -> None:
    url, replies = raw_server
    replies["/healthz"] = _http(200, b"ok")
    replies["/metrics"] = _http(200, b"# TYPE other_total counter\nother_total 1\n")
    replies["/readyz"] = replies["/gateway/services"] = b"\x00\x01 this is no HTTP \xff\r\n\r\n"
    watching = GatewayWatcher(url, timeout=1.0)
    try:
        view = await watching.fetch()
    finally:
        await watching.aclose()
    assert view.reachable and view.healthy is True and view.ready is None
    assert view.problem is not None
    assert "no llmagentos gateway metrics" in view.problem
    assert "/readyz: " in view.problem and "does not answer in HTTP" in view.problem


@pytest.mark.parametrize(
    "url", ["ftp://x", "not a url", "http://", "http://host:port", "", "http://u:p@host"]
)
def test_a_bad_url_is_refused_at_once(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GatewayWatcher(url)
    assert caught.value.field == "gateway"


def test_a_bad_timeout_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        GatewayWatcher("http://127.0.0.1:1", timeout=0)
    assert caught.value.field == "timeout"
