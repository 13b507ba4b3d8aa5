"""The session stores' contract, on SQLite and on a real Redis: compare-and-set
versions, the last applied call, and signed state that refuses anything else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmagentos.exceptions import ConfigError, SessionStoreError
from llmagentos.service.store import (
    RedisSessionStore,
    SessionStore,
    SqliteSessionStore,
    open_session_store,
)


@pytest.fixture(params=["sqlite", "redis"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(tmp_path / "sessions.db")


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    return f"test:{request.node.name}"  # tests share one Redis


@pytest.fixture
def store(spec: str, namespace: str) -> Iterator[SessionStore]:
    opened = open_session_store(spec, namespace=namespace)
    yield opened
    opened.close()


def test_versions_are_compare_and_set(store: SessionStore) -> None:
    assert store.load("s") is None
    assert store.save("s", 1, b"one", "k1", '{"a": 1}')
    assert not store.save("s", 1, b"again", "k1b", None)  # version 1 only when absent
    assert store.save("s", 2, b"two", "k2", '{"a": 2}')
    assert not store.save("s", 2, b"stale", "k2b", None)  # a replica that lost the race
    assert not store.save("s", 4, b"ahead", "k4", None)
    stored = store.load("s")
    assert stored is not None
    assert (stored.version, stored.state, stored.last_key, stored.last_reply) == (
        2, b"two", "k2", '{"a": 2}'
    )  # fmt: skip
    store.drop("s")
    assert store.load("s") is None
    assert store.save("s", 1, b"fresh", None, None)
    fresh = store.load("s")
    assert fresh is not None and fresh.last_key is None and fresh.last_reply is None


def test_binary_state_round_trips(store: SessionStore) -> None:
    state = bytes(range(256)) * 40
    assert store.save("bin", 1, state, "k", None)
    stored = store.load("bin")
    assert stored is not None and stored.state == state


def test_signed_state_refuses_other_writers(spec: str, namespace: str) -> None:
    signed = open_session_store(spec, secret="s3cret", namespace=namespace)
    unsigned = open_session_store(spec, namespace=namespace)
    other = open_session_store(spec, secret="another", namespace=namespace)
    try:
        assert signed.save("mine", 1, b"agent", "k", None)
        loaded = signed.load("mine")
        assert loaded is not None and loaded.state == b"agent"
        with pytest.raises(SessionStoreError, match="not signed"):
            other.load("mine")
        assert unsigned.save("forged", 1, b"x" * 64, "k", None)  # write access alone
        with pytest.raises(SessionStoreError, match="'forged'"):
            signed.load("forged")
    finally:
        for opened in (signed, unsigned, other):
            opened.close()


def test_the_spec_picks_the_store(tmp_path: Path, redis_url: str) -> None:
    sqlite = open_session_store(tmp_path / "a.db")
    redis = open_session_store(redis_url)
    try:
        assert isinstance(sqlite, SqliteSessionStore)
        assert isinstance(redis, RedisSessionStore)
    finally:
        sqlite.close()
        redis.close()


def test_redis_sessions_expire_when_asked(redis_url: str) -> None:
    store = RedisSessionStore(redis_url, namespace="test:ttl", ttl_seconds=60)
    try:
        assert store.save("t", 1, b"x", None, None)
        remaining = store._client.ttl("test:ttl:t")
        assert 0 < remaining <= 60
    finally:
        store.close()
    with pytest.raises(ConfigError, match="ttl_seconds"):
        RedisSessionStore(redis_url, ttl_seconds=-1)


def test_an_unreachable_redis_is_a_clear_error() -> None:
    from llmagentos._processes import free_port

    with pytest.raises(ConfigError, match="cannot reach Redis"):
        RedisSessionStore(f"redis://127.0.0.1:{free_port()}/0")


async def test_a_service_whose_redis_dies_answers_503_and_recovers_nothing_lost() -> None:
    import httpx

    from llmagentos.build import build_agent
    from llmagentos.config import load_config
    from llmagentos.service import service_app
    from tests.redis_server import running_redis

    taxi = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"
    config = load_config(taxi)
    with running_redis() as (redis, url):
        store = RedisSessionStore(url, namespace="test:dies")
        app = service_app(lambda: build_agent(config), name="taxi", store=store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            body = {"session": "s", "observation": 5}
            assert (await client.post("/v1/perception/perceive", json=body)).status_code == 200
            redis.kill()
            redis.wait(5)
            down = await client.post("/v1/perception/perceive", json=body)
            assert down.status_code == 503 and down.headers["retry-after"] == "1"
            assert "session store" in down.json()["detail"]
            health = await client.get("/healthz")  # the service itself stays up
            assert health.status_code == 200
        store.close()


def test_store_failures_are_typed() -> None:
    from llmagentos.exceptions import SessionStoreUnavailable
    from tests.redis_server import running_redis

    with running_redis() as (redis, url):
        store = RedisSessionStore(url, namespace="test:typed")
        redis.kill()
        redis.wait(5)
        with pytest.raises(SessionStoreUnavailable, match="session store"):
            store.load("s")
        with pytest.raises(SessionStoreUnavailable):
            store.save("s", 1, b"x", None, None)
        store.close()
