"""The gateway's hop to a replica (Http1Upstream by default; aiohttp's and httpx's clients
as options): what it passes on untouched,
and how each kind of failure is told apart. A real upstream process on loopback."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from llmagentos._processes import free_port, start_server
from llmagentos.gateway import ServiceRegistry
from llmagentos.gateway.app import Gateway
from llmagentos.gateway.http1_hop import Http1Upstream
from llmagentos.gateway.upstream import (
    AiohttpUpstream,
    HttpxUpstream,
    Upstream,
    UpstreamFailed,
    UpstreamRefused,
    UpstreamTimeout,
)

pytest.importorskip("aiohttp", reason="needs llmagentos[gateway]")


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    process, url = start_server(["llmagentos.gateway.testing"], port_flag=None)
    yield url
    process.terminate()
    process.wait(timeout=15)


@pytest.fixture(params=["http1", "aiohttp", "httpx"])
def client(request: pytest.FixtureRequest) -> Upstream:
    if request.param == "http1":
        return Http1Upstream()
    return AiohttpUpstream() if request.param == "aiohttp" else HttpxUpstream()


async def test_query_and_headers_arrive_exactly(client: Upstream, upstream_url: str) -> None:
    query = "a=1&a=2&b=%20x%2F&empty="
    try:
        reply = await client.request(
            "POST", f"{upstream_url}/inspect?{query}", body=b"{}",
            headers={"x-one": "1", "content-type": "application/json"}, timeout=5,
        )  # fmt: skip
    finally:
        await client.aclose()
    seen = json.loads(reply.content)
    assert reply.status == 200
    assert seen["query"] == query  # not re-quoted, repeats kept
    names = [name for name, _ in seen["headers"]]
    assert ("x-one", "1") in {(k, v) for k, v in seen["headers"]}
    if isinstance(client, AiohttpUpstream | Http1Upstream):
        assert "accept-encoding" not in names  # nothing added that the client did not send
        assert "user-agent" not in names


async def test_no_cookie_a_replica_sets_goes_out_again(client: Upstream, upstream_url: str) -> None:
    named = upstream_url.replace("127.0.0.1", "localhost")  # cookies are kept for names
    try:
        set_them = await client.request("GET", f"{named}/gzip", body=b"", headers={}, timeout=5)
        later = await client.request("GET", f"{named}/inspect", body=b"", headers={}, timeout=5)
    finally:
        await client.aclose()
    assert [v for k, v in set_them.headers if k.lower() == "set-cookie"] == ["a=1", "b=2"]
    assert "cookie" not in {name for name, _ in json.loads(later.content)["headers"]}


@pytest.mark.parametrize("kind", [Http1Upstream, AiohttpUpstream])
async def test_the_target_is_sent_byte_for_byte_or_not_at_all(
    upstream_url: str, kind: type[Http1Upstream | AiohttpUpstream]
) -> None:
    # The principal is signed over the target as forwarded: a client that normalised it
    # would send a request the signature (and the gateway's checks) did not cover.
    target = "/inspect/a/../b/%2e%2E/c%2F?x=%2e&y=/"
    exact_client = kind()
    try:
        reply = await exact_client.request(
            "GET", upstream_url + target, body=b"", headers={}, timeout=5
        )
    finally:
        await exact_client.aclose()
    seen = json.loads(reply.content)
    assert seen["raw_path"] + "?" + seen["query"] == target
    httpx_client = HttpxUpstream()  # httpx removes dot segments: it refuses instead
    try:
        with pytest.raises(UpstreamFailed, match="as it is"):
            await httpx_client.request(
                "GET", upstream_url + target, body=b"", headers={}, timeout=5
            )
        plain = await httpx_client.request(
            "GET", upstream_url + "/inspect/a%2Fb?x=%2e", body=b"", headers={}, timeout=5
        )
    finally:
        await httpx_client.aclose()
    seen = json.loads(plain.content)
    assert (seen["raw_path"], seen["query"]) == ("/inspect/a%2Fb", "x=%2e")


@pytest.mark.parametrize("kind", [Http1Upstream, AiohttpUpstream])
async def test_compressed_reply_and_repeated_headers(
    upstream_url: str, kind: type[Http1Upstream | AiohttpUpstream]
) -> None:
    client = kind()
    try:
        reply = await client.request("GET", f"{upstream_url}/gzip", body=b"", headers={}, timeout=5)
    finally:
        await client.aclose()
    headers = [(k.lower(), v) for k, v in reply.headers]
    assert ("content-encoding", "gzip") in headers
    assert gzip.decompress(reply.content) == b"squeezed " * 50  # passed on, not decoded
    assert [v for k, v in headers if k == "set-cookie"] == ["a=1", "b=2"]


async def test_refused_connection(client: Upstream) -> None:
    url = f"http://127.0.0.1:{free_port()}/echo"
    with pytest.raises(UpstreamRefused):
        await client.request("GET", url, body=b"", headers={}, timeout=5)
    await client.aclose()


async def test_timeout(client: Upstream, upstream_url: str) -> None:
    with pytest.raises(UpstreamTimeout, match=r"0\.2 s"):
        await client.request("GET", f"{upstream_url}/slow?s=3", body=b"", headers={}, timeout=0.2)
    await client.aclose()


async def test_connection_dropped_mid_request(client: Upstream) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()  # the request arrived; no answer comes

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(UpstreamFailed):
            await client.request(
                "POST", f"http://127.0.0.1:{port}/x", body=b"1", headers={}, timeout=5
            )
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_gateway_passes_the_reply_on_untouched(upstream_url: str) -> None:
    """Through the whole gateway app with its default (aiohttp) client."""
    registry = ServiceRegistry()
    registry.register("up", upstream_url)
    gateway = Gateway(registry)
    app = gateway.app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        raw = await http.get("/up/gzip", headers={"accept-encoding": "gzip"})
        head = await http.head("/up/gzip", headers={"accept-encoding": "gzip"})
        posted = await http.post(
            "/up/echo", content=b"body", headers={"expect": "100-continue"}
        )  # the gateway has read the body: the replica is not asked to wait for it
        sent = [("x-mine", "v"), ("x-dup", "a"), ("x-dup", "b"), ("connection", "x-hop"),
                ("x-hop", "private"), ("x-forwarded-for", "10.0.0.1")]  # fmt: skip
        seen = (await http.get("/up/inspect?q=%2A&q=2", headers=sent)).json()
    await gateway.upstream.aclose()
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.text == "squeezed " * 50  # httpx decodes what the gateway passed on as sent
    assert raw.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == raw.headers["content-length"]  # the GET's
    assert posted.status_code == 200 and posted.json()["body"] == "body"
    assert seen["query"] == "q=%2A&q=2"
    names = {k for k, _ in seen["headers"]}
    assert {"x-mine", "x-request-id", "traceparent", "x-forwarded-for"} <= names
    arrived = [(k, v) for k, v in seen["headers"]]
    assert [v for k, v in arrived if k == "x-dup"] == ["a", "b"]  # repeats kept
    assert "x-hop" not in names  # named in Connection: for the first hop only
    assert dict(arrived)["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"  # the chain grows


def test_event_streams_pass_through_as_they_come(upstream_url: str, tmp_path) -> None:
    """Each event reaches the client before the upstream produces the next one (the
    upstream waits for the client's go-ahead between events: buffering would hang)."""
    from llmagentos._processes import start_server

    config = tmp_path / "gateway.toml"
    config.write_text(f'[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n')
    gateway, url = start_server(["llmagentos", "gateway", str(config), "--access-log", "off"])
    try:
        seen = []
        timeout = httpx.Timeout(10.0)
        with httpx.stream("GET", f"{url}/up/sse?n=3", timeout=timeout) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    seen.append(line[6:])
                    if line != "data: [DONE]":
                        httpx.post(f"{upstream_url}/sse/next", timeout=timeout)
        assert seen == ["0", "1", "2", "[DONE]"]
        metrics = httpx.get(f"{url}/metrics").text
        assert 'route="/sse",service="up",status="200"' in metrics
    finally:
        gateway.terminate()
        gateway.wait(timeout=15)


async def test_a_streamed_reply_through_either_client(client: Upstream, upstream_url: str) -> None:
    async def go_ahead() -> None:
        async with httpx.AsyncClient() as http:
            await http.post(f"{upstream_url}/sse/next")

    reply = await client.request("GET", f"{upstream_url}/sse?n=2", body=b"", headers={}, timeout=5)
    assert reply.stream is not None and reply.content == b""
    received = b""
    async for piece in reply.stream:
        received += piece
        if not received.endswith(b"[DONE]\n\n"):
            await go_ahead()
    await client.aclose()
    assert received == b"data: 0\n\ndata: 1\n\ndata: [DONE]\n\n"


async def test_a_stalled_stream_is_cut_after_the_route_timeout(
    client: Upstream, upstream_url: str
) -> None:
    # The replica sends its first event, then waits for a /sse/next that never comes.
    reply = await client.request(
        "GET", f"{upstream_url}/sse?n=2", body=b"", headers={}, timeout=0.5
    )
    assert reply.stream is not None
    started = time.monotonic()
    received = b""
    async with asyncio.timeout(10):  # a hang fails here, not the whole run
        async for piece in reply.stream:
            received += piece
    assert received == b"data: 0\n\n"
    assert 0.4 < time.monotonic() - started < 5  # cut once the route's timeout passed
    await client.aclose()
