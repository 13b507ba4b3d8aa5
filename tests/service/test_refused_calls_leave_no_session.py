"""A call refused on a session that did not exist yet (a step before any reset, a
400) leaves no session behind, with a store or without one: nothing listed, no
Q-table, nothing counted against ``max_sessions_per_tenant``. A refused call on a
session that exists keeps it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from llmagentos.build import BuiltAgent, build_agent
from llmagentos.config import load_config
from llmagentos.service.store import SessionStore, open_session_store

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

from llmagentos.service import service_app

TAXI = load_config(Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml")


def _factory() -> BuiltAgent:
    return build_agent(TAXI)


@pytest.mark.parametrize("with_store", [False, True])
async def test_a_refused_first_call_leaves_no_session(tmp_path: Path, with_store: bool) -> None:
    store: SessionStore | None = None
    if with_store:
        store = open_session_store(tmp_path / "s.db", secret="s" * 32, namespace="taxi")
    app = service_app(_factory, name="taxi", max_sessions_per_tenant=3, store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        for i in range(4):
            refused = await client.post(
                "/v1/agent/step", json={"session": f"ghost{i}", "action": 1}
            )
            assert refused.status_code == 400 and "reset" in refused.json()["detail"]
        listed = await client.get("/v1/sessions")
        assert listed.json() == {"sessions": [], "truncated": False}
        assert (await client.get("/v1/sessions/ghost0/qtable")).status_code == 404
        assert (await client.delete("/v1/sessions/ghost0")).status_code == 404
        assert len(app.state.pool) == 0 and app.state.pool.resident("") == 0
        # The quota is whole: three real sessions fit.
        for i in range(3):
            reply = await client.post("/v1/agent/reset", json={"session": f"real{i}", "seed": 0})
            assert reply.status_code == 200, reply.text
        # A refused call on a session that exists keeps it.
        bad = await client.post("/v1/agent/step", json={"session": "real0", "action": 99})
        assert bad.status_code == 400
        listed = await client.get("/v1/sessions")
        assert listed.json()["sessions"] == ["real0", "real1", "real2"]
        assert (await client.get("/v1/sessions/real0/qtable")).status_code == 200
    if store is not None:
        store.close()
