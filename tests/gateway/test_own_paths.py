"""The gateway's own paths: a wrong one is a 404 naming it, a wrong method a 405 with
``Allow``, never a redirect or a plain-text page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from llmagentos.gateway import ServiceRegistry
from llmagentos.gateway.app import Gateway

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    registry = ServiceRegistry([{"name": "svc", "replicas": ["http://127.0.0.1:9"]}])
    gateway = Gateway(registry)
    transport = httpx.ASGITransport(app=gateway.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http
    await gateway.upstream.aclose()


@pytest.mark.parametrize(
    ("method", "path", "status", "detail"),
    [
        ("GET", "/", 404, "no route /"),
        ("GET", "/gateway/nothing", 404, "no gateway route /gateway/nothing"),
        ("GET", "/healthz/extra", 404, "no gateway route /healthz/extra"),
        ("GET", "/nope", 404, "unknown service 'nope' (known: svc)"),
        ("POST", "/nope/v1/x", 404, "unknown service 'nope' (known: svc)"),
        ("GET", "/v1/models", 404, "OpenAI-compatible face is off"),
        ("POST", "/gateway/services", 405, "POST is not allowed on /gateway/services"),
        ("DELETE", "/metrics", 405, "DELETE is not allowed on /metrics"),
    ],
)
async def test_wrong_paths_and_methods_are_named(
    client: httpx.AsyncClient, method: str, path: str, status: int, detail: str
) -> None:
    reply = await client.request(method, path)
    assert reply.status_code == status
    assert detail in reply.json()["detail"]
    assert reply.headers["x-request-id"]
    if status == 405:
        assert "GET" in reply.headers["allow"]


async def test_a_bare_service_name_is_routed_not_redirected(client: httpx.AsyncClient) -> None:
    reply = await client.get("/svc")  # its replica is down: 503, not a 307 to /svc/
    assert reply.status_code == 503 and reply.headers["retry-after"]
    assert "no replica of 'svc'" in reply.json()["detail"]


class _Broken:
    """An upstream client with a bug: it raises what no upstream error is."""

    async def request(self, *args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug in the client")

    async def aclose(self) -> None:
        return None


async def test_a_bug_on_the_proxy_path_is_a_500_problem_not_a_dropped_connection() -> None:
    registry = ServiceRegistry([{"name": "svc", "replicas": ["http://127.0.0.1:9"]}])
    gateway = Gateway(registry, upstream=_Broken())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=gateway.app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        reply = await http.post("/svc/v1/x", content=b"{}")
    assert reply.status_code == 500 and reply.headers["x-request-id"]
    assert reply.json()["detail"] == "the gateway failed on this request"
