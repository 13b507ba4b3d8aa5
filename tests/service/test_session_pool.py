"""The session pool under pressure, in process (the store and the app are real; only
the calls are made in process): quotas per tenant, sessions in use never evicted,
evicted sessions back with what they learned, stored states copied or rolled back
refused without losing anything, and no store I/O on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos.build import BuiltAgent, build_agent
from llmagentos.config import load_config
from llmagentos.principal import PRINCIPAL_HEADER, Principal, PrincipalSigner
from llmagentos.service.store import SessionKey, SessionStore, open_session_store
from llmagentos.types import Decision
from tests.service.test_store import _copy_row

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

from llmagentos.service import service_app

TAXI = load_config(Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml")
STATE_SECRET = "the state secret of these replicas"
PRINCIPAL_SECRET = "the principal secret of the gateway"
SIGNER = PrincipalSigner(PRINCIPAL_SECRET)


def _factory() -> BuiltAgent:
    return build_agent(TAXI)


class Caller:
    """Signed calls of one tenant to an in-process app."""

    def __init__(self, client: httpx.AsyncClient, tenant: str | None) -> None:
        self.client = client
        self.principal = None if tenant is None else Principal(f"key-{tenant}", tenant, ("*",))

    async def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import json

        raw = b"" if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if raw else {}
        if self.principal is not None:
            headers[PRINCIPAL_HEADER] = SIGNER.sign(
                self.principal, method=method, target=path, body=raw
            )
        return await self.client.request(method, path, content=raw, headers=headers)

    async def episode(self, session: str, steps: int) -> httpx.Response:
        body = {"session": session, "seed": 0, "max_steps": steps}
        return await self.send("POST", "/v1/agent/episode", body)

    async def visits(self, session: str) -> int | None:
        reply = await self.send("GET", f"/v1/sessions/{session}/qtable")
        if reply.status_code != 200:
            return None
        return int(sum(map(sum, reply.json()["visits"])))


@contextlib.asynccontextmanager
async def _client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        yield client


def _app(**options: Any) -> Any:
    return service_app(_factory, name="taxi", principal_secret=PRINCIPAL_SECRET, **options)


async def test_without_a_store_a_flooding_tenant_is_refused_and_nobody_loses_a_session() -> None:
    app = _app(max_sessions=5, max_sessions_per_tenant=3)
    async with _client(app) as client:
        acme, evil, other = Caller(client, "acme"), Caller(client, "evil"), Caller(client, "o")
        assert (await acme.episode("learned", 50)).status_code == 200
        statuses = [(await evil.episode(f"flood{i}", 2)).status_code for i in range(10)]
        assert statuses == [200] * 3 + [429] * 7
        refused = await evil.episode("one-more", 2)
        assert refused.json()["field"] == "max_sessions_per_tenant"
        assert "max_sessions_per_tenant" in refused.json()["detail"]
        assert await acme.visits("learned") == 50  # not evicted, not reset
        assert (await other.episode("x", 2)).status_code == 200  # 5 in memory now
        full = await other.episode("y", 2)
        assert full.status_code == 503 and full.json()["field"] == "max_sessions"
        assert full.headers["retry-after"] == "1"
        # Ending a session frees its place.
        assert (await evil.send("DELETE", "/v1/sessions/flood0")).status_code == 200
        assert (await evil.episode("flood10", 2)).status_code == 200
        assert await acme.visits("learned") == 50
        metrics = (await client.get("/metrics")).text
        assert 'llmagentos_service_sessions_refused_total{limit="max_sessions_per_tenant"} 8.0' in (
            metrics
        )
        assert "llmagentos_service_sessions 5.0" in metrics


async def test_with_a_store_an_evicted_session_comes_back_with_what_it_learned(
    tmp_path: Path,
) -> None:
    store = open_session_store(tmp_path / "s.db", secret=STATE_SECRET, namespace="taxi")
    app = _app(max_sessions=4, max_sessions_per_tenant=2, store=store)
    pool = app.state.pool
    async with _client(app) as client:
        acme, evil = Caller(client, "acme"), Caller(client, "evil")
        assert (await acme.episode("learned", 50)).status_code == 200
        assert (await acme.episode("second", 3)).status_code == 200
        # Evil floods: its own idle sessions make room, never acme's.
        for i in range(12):
            assert (await evil.episode(f"flood{i}", 2)).status_code == 200
        resident = set(pool._sessions)
        assert {SessionKey("acme", "learned"), SessionKey("acme", "second")} <= resident
        assert pool.resident("evil") == 2
        # Acme's own new sessions evict its least recently used: "learned".
        assert (await acme.episode("third", 3)).status_code == 200
        assert SessionKey("acme", "learned") not in pool._sessions
        assert await acme.visits("learned") == 50  # read back from the store
        assert (await acme.episode("learned", 10)).status_code == 200  # and goes on
        assert await acme.visits("learned") == 60
        assert pool.stats.evicted >= 11
        metrics = (await client.get("/metrics")).text
        assert f"llmagentos_service_sessions_evicted_total {float(pool.stats.evicted)}" in metrics
    store.close()


class _Gate:
    """A planner that waits in ``adecide`` until let through: a call in progress."""

    def __init__(self) -> None:
        self.inside = asyncio.Event()
        self.open = asyncio.Event()

    def factory(self) -> BuiltAgent:
        built = _factory()
        planning = built.agent.modules[1]

        async def adecide(features: Any) -> Decision:
            self.inside.set()
            await self.open.wait()
            return Decision(action=0, reason="let through")

        planning.adecide = adecide  # type: ignore[method-assign]
        return built


@pytest.mark.parametrize("with_store", [True, False])
async def test_a_session_in_a_call_is_never_evicted(tmp_path: Path, with_store: bool) -> None:
    gate = _Gate()
    store = open_session_store(tmp_path / "s.db", secret=STATE_SECRET) if with_store else None
    app = service_app(gate.factory, max_sessions_per_tenant=1, store=store)
    async with _client(app) as client:
        busy = asyncio.create_task(
            client.post("/v1/planning/decide", json={"session": "busy", "features": 3})
        )
        await asyncio.wait_for(gate.inside.wait(), 20)
        # A queued call of the same session keeps it in use too.
        queued = asyncio.create_task(
            client.post("/v1/planning/decide", json={"session": "busy", "features": 4})
        )
        await asyncio.sleep(0)
        refused = await client.post("/v1/planning/decide", json={"session": "new", "features": 1})
        assert refused.status_code == (503 if with_store else 429)
        assert refused.json()["field"] == "max_sessions_per_tenant"
        gate.open.set()
        done = await asyncio.wait_for(asyncio.gather(busy, queued), 20)
        assert [r.status_code for r in done] == [200, 200]
        if store is not None:
            stored = store.load(SessionKey("", "busy"))
            assert stored is not None and stored.version == 2  # both calls kept
            # Idle now: with a store, the new session evicts it (it is saved).
            ok = await client.post("/v1/planning/decide", json={"session": "new", "features": 1})
            assert ok.status_code == 200
    if store is not None:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_state_copied_into_another_session_is_refused_and_nothing_is_lost(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    spec = str(tmp_path / "s.db")
    if backend == "redis":
        spec = str(request.getfixturevalue("redis_url"))
    namespace = f"taxi:{request.node.name}"
    store = open_session_store(spec, secret=STATE_SECRET, namespace=namespace)
    acme_s1, evil_s1 = SessionKey("acme", "s1"), SessionKey("evil", "s1")
    app = _app(store=store)
    async with _client(app) as client:
        acme, evil = Caller(client, "acme"), Caller(client, "evil")
        assert (await acme.episode("s1", 40)).status_code == 200
        assert (await evil.episode("s1", 3)).status_code == 200
        aside = SessionKey("backup", "evil-s1")
        _copy_row(spec, namespace, evil_s1, aside)  # evil's own row, kept aside
        _copy_row(spec, namespace, acme_s1, evil_s1)  # write access to the store alone
        refused = await evil.episode("s1", 3)
        assert refused.status_code == 500 and refused.json()["reason"] == "forged"
        assert (await evil.send("GET", "/v1/sessions/s1/qtable")).status_code == 500
        assert await acme.visits("s1") == 40  # acme's untouched
        _copy_row(spec, namespace, aside, evil_s1)  # the operator puts evil's row back
        assert await evil.visits("s1") == 3  # nothing was written over it meanwhile
        assert app.state.pool.stats.state_refused["forged"] == 2
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_rolled_back_state_is_refused_even_after_eviction(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    spec = str(tmp_path / "s.db")
    if backend == "redis":
        spec = str(request.getfixturevalue("redis_url"))
    namespace = f"taxi:{request.node.name}"
    store = open_session_store(spec, secret=STATE_SECRET, namespace=namespace)
    app = _app(store=store, max_sessions_per_tenant=1)
    s1, old = SessionKey("acme", "s1"), SessionKey("backup", "s1-v1")
    async with _client(app) as client:
        acme = Caller(client, "acme")
        assert (await acme.episode("s1", 10)).status_code == 200
        _copy_row(spec, namespace, s1, old)  # version 1, validly sealed, kept aside
        assert (await acme.episode("s1", 10)).status_code == 200
        assert (await acme.episode("s1", 10)).status_code == 200
        _copy_row(spec, namespace, old, s1)  # back to version 1
        refused = await acme.episode("s1", 10)
        assert refused.status_code == 500 and refused.json()["reason"] == "rollback"
        assert "version 1" in refused.json()["detail"]
        assert (await acme.episode("other", 2)).status_code == 200  # evicts s1 (idle)
        assert s1 not in app.state.pool._sessions
        again = await acme.send("GET", "/v1/sessions/s1/qtable")
        assert again.status_code == 500 and again.json()["reason"] == "rollback"
        stored = store.load(s1)
        assert stored is not None and stored.version == 1  # nothing written over it
    store.close()


class _Watched:
    """A real store whose every call notes the thread it ran on."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.namespace, self.signed, self.ttl_seconds = store.namespace, store.signed, 0
        self.threads: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.store, name)

        def watched(*args: Any) -> Any:
            self.threads.append((name, threading.get_ident()))
            return real(*args)

        return watched


async def test_no_store_io_or_decoding_runs_on_the_event_loop(tmp_path: Path) -> None:
    watched = _Watched(open_session_store(tmp_path / "s.db", secret=STATE_SECRET))
    app = _app(store=watched, max_sessions_per_tenant=1)
    codec = app.state.pool.codec
    decoded: list[int] = []
    real_loads = codec.loads

    def loads(*args: Any) -> Any:
        decoded.append(threading.get_ident())
        return real_loads(*args)

    codec.loads = loads
    loop_thread = threading.get_ident()
    async with _client(app) as client:
        acme = Caller(client, "acme")
        assert (await acme.episode("a", 5)).status_code == 200
        assert (await acme.episode("b", 5)).status_code == 200  # evicts "a"
        assert await acme.visits("a") == 5  # decoded from the store
        assert (await acme.send("GET", "/v1/sessions")).json()["sessions"] == ["a", "b"]
        assert (await acme.send("DELETE", "/v1/sessions/a")).status_code == 200
        assert (await acme.send("DELETE", "/v1/sessions/a")).status_code == 404
    names = {name for name, _ in watched.threads}
    assert {"load", "save", "sessions"} <= names
    assert decoded
    assert all(thread != loop_thread for _, thread in watched.threads)
    assert all(thread != loop_thread for thread in decoded)
    watched.store.close()
