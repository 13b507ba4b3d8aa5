"""An ``Idempotency-Key`` with a store means one request: sent again with that very
request it gets the stored reply (``x-idempotent-replay``); sent with another route or
another body it is a 422 naming the header, and nothing is applied. A session (so the
key stored with it) belongs to one tenant: another tenant's key never matches."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos.build import BuiltAgent, build_agent
from llmagentos.config import load_config
from llmagentos.principal import PRINCIPAL_HEADER, Principal, PrincipalSigner
from llmagentos.service.pool import _replays, _stamp
from llmagentos.service.store import open_session_store

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

from llmagentos.service import service_app

TAXI = load_config(Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml")
SIGNER = PrincipalSigner("the principal secret of the gateway")


def _factory() -> BuiltAgent:
    return build_agent(TAXI)


@contextlib.asynccontextmanager
async def _client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = open_session_store(tmp_path / "s.db", secret="s" * 32, namespace="taxi")
    app = service_app(
        _factory, name="taxi", store=store, principal_secret="the principal secret of the gateway"
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client
    finally:
        store.close()


async def _send(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    key: str | None = None,
    tenant: str | None = None,
) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["idempotency-key"] = key
    if tenant is not None:
        principal = Principal(f"key-{tenant}", tenant, ("*",))
        headers[PRINCIPAL_HEADER] = SIGNER.sign(principal, method="POST", target=path, body=raw)
    return await client.post(path, content=raw, headers=headers)


async def _visits(client: httpx.AsyncClient, session: str) -> int:
    reply = await client.get(f"/v1/sessions/{session}/qtable")
    assert reply.status_code == 200, reply.text
    return int(sum(map(sum, reply.json()["visits"])))


def _names_the_key(reply: httpx.Response, key: str) -> None:
    assert reply.status_code == 422, reply.text
    assert "x-idempotent-replay" not in reply.headers
    (error,) = reply.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert error["input"] == key and "Idempotency-Key" in error["msg"]


async def test_the_same_request_again_is_replayed(tmp_path: Path) -> None:
    async with _client(tmp_path) as client:
        reset = {"session": "s1", "seed": 0}
        first = await _send(client, "/v1/agent/reset", reset, "k1")
        again = await _send(client, "/v1/agent/reset", reset, "k1")
        assert first.status_code == again.status_code == 200
        assert "x-idempotent-replay" not in first.headers
        assert again.headers["x-idempotent-replay"] == "true"
        assert again.json() == first.json()
        step = {"session": "s1", "action": 1}
        assert (await _send(client, "/v1/agent/step", step, "k2")).status_code == 200
        replayed = await _send(client, "/v1/agent/step", step, "k2")
        assert replayed.headers["x-idempotent-replay"] == "true"
        assert await _visits(client, "s1") == 1  # applied once


async def test_a_key_reused_for_another_request_is_a_422_and_applies_nothing(
    tmp_path: Path,
) -> None:
    async with _client(tmp_path) as client:
        reset = {"session": "s1", "seed": 0}
        assert (await _send(client, "/v1/agent/reset", reset, "k1")).status_code == 200
        other_body = await _send(client, "/v1/agent/reset", {"session": "s1", "seed": 5}, "k1")
        _names_the_key(other_body, "k1")
        assert "another body" in other_body.json()["detail"][0]["msg"]
        other_route = await _send(client, "/v1/agent/step", {"session": "s1", "action": 1}, "k1")
        _names_the_key(other_route, "k1")
        assert "POST /v1/agent/reset" in other_route.json()["detail"][0]["msg"]
        perceive = {"session": "s1", "observation": 7}
        _names_the_key(await _send(client, "/v1/perception/perceive", perceive, "k1"), "k1")
        assert await _visits(client, "s1") == 0  # the "step" was not applied
        # The first request itself is still replayed; a new key is applied.
        again = await _send(client, "/v1/agent/reset", reset, "k1")
        assert again.headers["x-idempotent-replay"] == "true"
        step = await _send(client, "/v1/agent/step", {"session": "s1", "action": 1}, "k2")
        assert step.status_code == 200 and "x-idempotent-replay" not in step.headers
        assert await _visits(client, "s1") == 1


async def test_keys_are_per_tenant(tmp_path: Path) -> None:
    async with _client(tmp_path) as client:
        reset = {"session": "s1", "seed": 0}
        assert (await _send(client, "/v1/agent/reset", reset, "k1", "acme")).status_code == 200
        # Another tenant's session of the same id: its own row, its own keys.
        for tenant in ("evil", None):
            other = await _send(client, "/v1/agent/reset", {**reset, "seed": 3}, "k1", tenant)
            assert other.status_code == 200 and "x-idempotent-replay" not in other.headers


def test_a_key_stored_without_its_request_matches_on_the_key_alone() -> None:
    request = f"{'0' * 64} POST /v1/agent/step"
    assert _stamp("k1", None) == "k1" and _stamp(None, request) is None
    assert _replays("k1", "k1", request)  # a row written before requests were noted
    assert not _replays("k1", "k2", request)
    assert _replays(_stamp("k1", request), "k1", request)
    assert _replays(_stamp("k1", request), "k1", None)  # a call outside an HTTP request
    assert not _replays(_stamp("k1", request), "k2", request)
