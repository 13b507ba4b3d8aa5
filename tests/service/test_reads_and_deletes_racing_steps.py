"""Reads (``GET .../qtable``) and deletions racing steps on one session of one replica
with a store: no false integrity alarm (a version a concurrent step saved while a read
was loading is no rollback) and no false conflict (a deletion is never overtaken by a
step that arrived after it). In process, with the store's reads made slow so the
steps land inside them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos.build import BuiltAgent, build_agent
from llmagentos.config import load_config
from llmagentos.service.store import SessionKey, SessionStore, StoredSession, open_session_store
from tests.service.test_store import _copy_row

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

from llmagentos.service import service_app

TAXI = load_config(Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml")


def _factory() -> BuiltAgent:
    return build_agent(TAXI)


class _SlowReads:
    """A real store whose every load returns a little after it read the row."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.namespace, self.signed, self.ttl_seconds = store.namespace, store.signed, 0

    def load(self, key: SessionKey) -> StoredSession | None:
        stored = self.store.load(key)
        time.sleep(0.005)  # meanwhile a step of the same session may save the next version
        return stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@contextlib.asynccontextmanager
async def _service(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    store = open_session_store(tmp_path / "s.db", secret="s" * 32, namespace="taxi")
    app = service_app(_factory, name="taxi", store=_SlowReads(store))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client, app.state.pool
    finally:
        store.close()


async def test_reads_racing_steps_raise_no_false_rollback(tmp_path: Path) -> None:
    async with _service(tmp_path) as (client, pool):
        for _ in range(5):
            reset = await client.post("/v1/agent/reset", json={"session": "s1", "seed": 0})
            assert reset.status_code == 200
            calls = [
                client.post("/v1/agent/step", json={"session": "s1", "action": i % 4})
                for i in range(8)
            ]
            calls += [client.get("/v1/sessions/s1/qtable") for _ in range(8)]
            for reply in await asyncio.gather(*calls):
                assert reply.status_code == 200, reply.text
        assert pool.stats.state_refused["rollback"] == 0
        visits = (await client.get("/v1/sessions/s1/qtable")).json()["visits"]
        assert sum(map(sum, visits)) == 5 * 8  # every step applied once


async def test_deletes_racing_steps_raise_no_false_rollback_or_conflict(tmp_path: Path) -> None:
    async with _service(tmp_path) as (client, pool):
        seen: set[int] = set()
        for _ in range(5):
            reset = await client.post("/v1/agent/reset", json={"session": "s1", "seed": 0})
            assert reset.status_code == 200
            calls = [
                client.post("/v1/agent/step", json={"session": "s1", "action": i % 4})
                for i in range(6)
            ]
            calls.insert(2, client.delete("/v1/sessions/s1"))
            calls.insert(5, client.delete("/v1/sessions/s1"))
            calls += [client.get("/v1/sessions/s1/qtable") for _ in range(4)]
            for reply in await asyncio.gather(*calls):
                seen.add(reply.status_code)
                # 400: a step after the deletion (before a reset); 404: already deleted.
                assert reply.status_code in (200, 400, 404), reply.text
        assert pool.stats.state_refused["rollback"] == 0
        assert 200 in seen and 400 in seen
        # Deleted at last, and coherent: a new episode starts afresh.
        assert (await client.delete("/v1/sessions/s1")).status_code in (200, 404)
        assert (await client.get("/v1/sessions/s1/qtable")).status_code == 404
        reset = await client.post("/v1/agent/reset", json={"session": "s1", "seed": 0})
        step = await client.post("/v1/agent/step", json={"session": "s1", "action": 0})
        assert reset.status_code == 200 and step.status_code == 200
        visits = (await client.get("/v1/sessions/s1/qtable")).json()["visits"]
        assert sum(map(sum, visits)) == 1


async def test_a_real_rollback_is_still_refused_on_a_read_and_a_delete(tmp_path: Path) -> None:
    async with _service(tmp_path) as (client, pool):
        s1, aside = SessionKey("", "s1"), SessionKey("backup", "s1")
        assert (await client.post("/v1/agent/reset", json={"session": "s1"})).status_code == 200
        _copy_row(str(tmp_path / "s.db"), "taxi", s1, aside)  # version 1, validly sealed
        assert (await client.post("/v1/agent/step", json={"session": "s1", "action": 0})).is_success
        _copy_row(str(tmp_path / "s.db"), "taxi", aside, s1)  # rolled back to version 1
        for refused in (
            await client.get("/v1/sessions/s1/qtable"),
            await client.delete("/v1/sessions/s1"),
        ):
            assert refused.status_code == 500 and refused.json()["reason"] == "rollback"
        assert pool.stats.state_refused["rollback"] == 2
