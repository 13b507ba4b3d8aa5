"""The admin routes: their own credential, loopback only without one, JSON only, and
replicas only inside the configured networks.

Loopback and keys through real gateway processes (raw HTTP); a client on another
address in process (tests bind only loopback), with the address set by the transport.
No request ever goes to an address outside loopback, nor any DNS query off the machine:
refused URLs are refused before any connection, which is what is tested.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos._processes import start_server, stop_processes
from llmagentos.gateway import ApiKeyStore, Gateway, ReplicaNetworks, ServiceRegistry
from llmagentos.gateway.networks import resolve
from llmagentos.gateway.upstream import AiohttpUpstream, UpstreamRefused
from tests.gateway.rawhttp import RawReply, send

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

ROOT = Path(__file__).resolve().parents[2]
SECRET = "admin-test-principal-secret-0123456789"
ENV = {**os.environ, "LLMAGENTOS_PRINCIPAL_SECRET": SECRET, "PYTHONPATH": str(ROOT / "src")}


@pytest.fixture(scope="module")
def open_gateway(echo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway without auth: its admin routes answer loopback clients only."""
    config = tmp_path_factory.mktemp("open") / "gateway.toml"
    config.write_text(f'[gateway]\nhealth_interval = 0\n\n[[services]]\nname = "echo"\n'
                      f'replicas = ["{echo}"]\n')  # fmt: skip
    process, url = start_server(["llmagentos", "gateway", str(config)], env=ENV)
    yield url
    stop_processes(process)


def _register(gateway: str, name: str, url: Any, content_type: str = "application/json",
              *, method: str = "POST", key: str | None = None) -> RawReply:  # fmt: skip
    headers = [("Content-Type", content_type)]
    if key is not None:
        headers.append(("Authorization", f"Bearer {key}"))
    body = json.dumps({"url": url}).encode()
    return send(gateway, method, f"/gateway/services/{name}/replicas", headers=headers, body=body)


def _names(gateway: str, key: str | None = None) -> set[str]:
    headers = [] if key is None else [("Authorization", f"Bearer {key}")]
    listed = send(gateway, "GET", "/gateway/services", headers=headers).json()
    return {service["name"] for service in listed["services"]}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
     "multipart/form-data; boundary=x", "application/vnd.x+json", "application/jsonx", ""],
)  # fmt: skip
def test_a_cross_site_post_changes_nothing(open_gateway: str, echo: str, content_type: str) -> None:
    # What a browser sends across sites without a preflight: refused, registry unchanged.
    reply = _register(open_gateway, "planted", echo, content_type)
    assert reply.status == 415 and reply.json()["field"] == "content-type"
    assert "planted" not in _names(open_gateway)
    removal = _register(open_gateway, "echo", echo, content_type, method="DELETE")
    assert removal.status == 415 and "echo" in _names(open_gateway)


def test_json_registration_works_in_any_casing(open_gateway: str, echo: str) -> None:
    added = _register(open_gateway, "again", echo, "Application/JSON; charset=UTF-8")
    assert added.status == 201 and "again" in _names(open_gateway)
    gone = _register(open_gateway, "again", echo, method="DELETE")
    assert gone.status == 200 and "again" not in _names(open_gateway)


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("http://10.0.0.1:80", 403, "outside the replica networks"),
        ("http://192.168.1.1", 403, "outside the replica networks"),
        ("http://[::ffff:10.0.0.1]:80", 403, "outside the replica networks"),
        ("http://0.0.0.0:80", 403, "outside the replica networks"),
        ("http://[::]:80", 403, "outside the replica networks"),
        ("http://169.254.169.254/latest", 403, "outside the replica networks"),
        ("http://a..b:80", 403, "does not resolve"),  # refused locally: no DNS query
        ("http://user:pw@127.0.0.1:80", 422, "user info"),
        ("http://127.0.0.1:80@10.0.0.1", 422, "user info"),
        ("file:///etc/passwd", 422, "http(s) URL"),
        ("gopher://127.0.0.1:70", 422, "http(s) URL"),
        ("http://127.0.0.1:80/a/../b", 422, "plain segments"),
        ("http://127.0.0.1:80/%2e%2e", 422, "plain segments"),
        ("http://127.0.0.1:99999", 422, "not a URL"),
        ("http://127.0.0.1:80/?x=1", 422, "query"),
        ("http://127.0.0.1\u0000.evil:80", 422, "controls"),  # a resolver stops at the NUL
        (" http://127.0.0.1:80", 422, "spaces"),
        ("\x01http://127.0.0.1:80", 422, "controls"),
        ("http://127.0.0.1:80\t", 422, "spaces"),
        (123, 422, "url"),
    ],
)
def test_replicas_must_resolve_inside_the_replica_networks(
    open_gateway: str, url: Any, status: int, words: str
) -> None:
    reply = _register(open_gateway, "elsewhere", url)
    assert reply.status == status and words in reply.json()["detail"], reply.body
    assert "elsewhere" not in _names(open_gateway)


def test_a_host_name_on_loopback_is_a_fine_replica(open_gateway: str, echo: str) -> None:
    port = echo.rsplit(":", 1)[1]
    added = _register(open_gateway, "named", f"http://localhost:{port}")
    assert added.status == 201
    assert send(open_gateway, "GET", "/named/inspect").status == 200
    _register(open_gateway, "named", f"http://localhost:{port}", method="DELETE")


async def test_a_name_that_resolves_elsewhere_later_is_never_connected_to(echo: str) -> None:
    # DNS rebinding: the name passed its check, then points outside the networks. Here
    # 'localhost' stands for it, under networks that do not hold loopback.
    before = httpx.get(f"{echo}/calls").json()["requests"]
    upstream = AiohttpUpstream(networks=ReplicaNetworks(["10.0.0.0/8"]))
    port = echo.rsplit(":", 1)[1]
    try:
        with pytest.raises(UpstreamRefused):
            await upstream.request(
                "GET", f"http://localhost:{port}/inspect", body=b"", headers=[], timeout=5
            )
    finally:
        await upstream.aclose()
    assert httpx.get(f"{echo}/calls").json()["requests"] == before  # nothing reached it


def test_address_ranges_and_lookups() -> None:
    networks = ReplicaNetworks()
    assert networks.allows("127.0.0.1") and networks.allows("127.9.9.9") and networks.allows("::1")
    assert networks.allows("::ffff:127.0.0.1")  # IPv4-mapped: judged as IPv4
    assert not networks.allows("::ffff:10.0.0.1") and not networks.allows("10.0.0.1")
    assert not networks.allows("not an address")
    assert set(resolve("localhost", 80)) <= {"127.0.0.1", "::1"}
    assert resolve("[::1]", 80) == ["::1"]
    assert resolve("a..b", 80) == []


@pytest.fixture
async def in_process() -> AsyncIterator[Any]:
    registry = ServiceRegistry([{"name": "svc", "replicas": ["http://127.0.0.1:9"]}])
    gateway = Gateway(registry)

    def client(host: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=gateway.app(), client=(host, 50000))
        return httpx.AsyncClient(transport=transport, base_url="http://gw")

    yield client
    await gateway.upstream.aclose()


@pytest.mark.parametrize(
    ("host", "status"),
    [("127.0.0.1", 200), ("127.0.0.2", 200), ("::1", 200), ("::ffff:127.0.0.1", 200),
     ("203.0.113.7", 403), ("10.0.0.5", 403), ("::ffff:10.0.0.5", 403), ("testclient", 403)],
)  # fmt: skip
async def test_without_a_key_store_admin_answers_only_loopback(
    in_process: Any, host: str, status: int
) -> None:
    async with in_process(host) as client:
        listed = await client.get("/gateway/services")
        added = await client.post(
            "/gateway/services/new/replicas", json={"url": "http://127.0.0.1:1"}
        )
    assert listed.status_code == status
    assert added.status_code == (201 if status == 200 else 403)
    if status == 403:
        assert "loopback" in listed.json()["detail"]


def test_admin_keys_and_only_them_open_the_admin_routes(echo: str, tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path / "keys.db", scrypt_n=2**10)
    admin = keys.create_key(None, admin=True)
    star = keys.create_key("ops", ["*:*"])
    gateway_scope = keys.create_key("ops", ["gateway:*"])
    keys.close()
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nkeys = "keys.db"\nhealth_interval = 0\n\n'
                      f'[[services]]\nname = "echo"\nreplicas = ["{echo}"]\n')  # fmt: skip
    process, url = start_server(["llmagentos", "gateway", str(config)], env=ENV)
    try:
        # Loopback is no credential once there is a key store.
        assert send(url, "GET", "/gateway/services").status == 401
        for key in (star, gateway_scope):
            listed = send(url, "GET", "/gateway/services",
                          headers=[("Authorization", f"Bearer {key}")])  # fmt: skip
            assert listed.status == 403 and "not an admin key" in listed.json()["detail"]
            assert _register(url, "planted", echo, key=key).status == 403
        assert _names(url, admin) == {"echo"}  # nothing was planted
        assert _register(url, "added", echo, key=admin).status == 201
        assert _names(url, admin) == {"echo", "added"}
        # An admin key calls no service.
        proxied = send(url, "GET", "/echo/inspect", headers=[("Authorization", f"Bearer {admin}")])
        assert proxied.status == 403
        # And still no cross-site POST with it.
        assert _register(url, "other", echo, "text/plain", key=admin).status == 415
    finally:
        stop_processes(process)
