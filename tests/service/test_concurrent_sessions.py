"""Sessions of one service run concurrently: a call awaiting its model (an LLM planner)
does not hold up other sessions, while one session's calls stay in order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos.build import BuiltAgent, build_agent
from llmagentos.config import load_config
from llmagentos.types import Decision

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

from llmagentos.service.app import service_app

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"


class _Rendezvous:
    """Each decide waits until ``parties`` decides are in progress at once."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.inside = 0
        self.peak = 0
        self.everyone = asyncio.Event()

    def planner_of(self, built: BuiltAgent) -> BuiltAgent:
        planning = built.agent.modules[1]

        async def adecide(features: Any) -> Decision:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            if self.inside >= self.parties:
                self.everyone.set()
            await self.everyone.wait()  # what an LLM planner does while its model works
            self.inside -= 1
            return Decision(action=int(features) % 6, reason="waited for the others")

        planning.adecide = adecide  # type: ignore[method-assign]
        return built


async def test_sessions_overlap_while_one_awaits() -> None:
    config = load_config(CONFIG)
    meeting = _Rendezvous(parties=3)
    app = service_app(lambda: meeting.planner_of(build_agent(config)), name="taxi")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        calls = [
            client.post("/v1/planning/decide", json={"session": f"s{i}", "features": 40 + i})
            for i in range(3)
        ]
        # Served one at a time, the first would wait forever for the other two.
        replies = await asyncio.wait_for(asyncio.gather(*calls), timeout=20)
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert [r.json()["action"] for r in replies] == [4, 5, 0]
    assert meeting.peak == 3


async def test_one_sessions_calls_stay_in_order() -> None:
    config = load_config(CONFIG)
    meeting = _Rendezvous(parties=2)
    app = service_app(lambda: meeting.planner_of(build_agent(config)), name="taxi")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        calls = [
            client.post("/v1/planning/decide", json={"session": "same", "features": 1})
            for _ in range(2)
        ]
        with pytest.raises(TimeoutError):  # the second waits for the first, which waits
            await asyncio.wait_for(asyncio.gather(*calls), timeout=1.0)
    assert meeting.peak == 1


async def test_a_replica_that_lost_the_race_answers_409_and_applies_nothing(
    tmp_path: Path,
) -> None:
    from llmagentos.service.store import SessionKey, SqliteSessionStore

    config = load_config(CONFIG)
    secret = "shared by both replicas of b"
    store = SqliteSessionStore(tmp_path / "s.db", secret=secret)
    other_replica = SqliteSessionStore(tmp_path / "s.db", secret=secret)
    app = service_app(lambda: build_agent(config), name="b", store=store)
    real_save = store.save
    raced: list[int] = []

    def save_after_another_replica(key: SessionKey, version: int, *args: Any) -> bool:
        if not raced:  # another replica saves this very version first
            raced.append(version)
            assert other_replica.save(key, version, b"theirs", "k-other", "{}")
        return real_save(key, version, *args)

    store.save = save_after_another_replica  # type: ignore[method-assign]
    body = {"session": "shared", "observation": 7}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as b:
        lost = await b.post("/v1/perception/perceive", json=body)
        assert lost.status_code == 409 and "not applied" in lost.json()["detail"]
        stored = other_replica.load(SessionKey("", "shared"))
        assert stored is not None and stored.state == b"theirs"  # theirs stands, not ours
    other_replica.close()
