"""The session stores' contract, on SQLite and on a real Redis: compare-and-set
versions, the last applied call, tombstones, per-tenant listing, and sealed rows that
refuse anything copied, forged or unsealed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmagentos.exceptions import ConfigError, SessionStateRefused, SessionStoreError
from llmagentos.service.store import (
    RedisSessionStore,
    SessionKey,
    SessionStore,
    SqliteSessionStore,
    open_session_store,
)

SECRET = "sixteen bytes or more of state secret"
S = SessionKey("acme", "s")


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
    opened = open_session_store(spec, namespace=namespace, secret=SECRET)
    yield opened
    opened.close()


def test_versions_are_compare_and_set(store: SessionStore) -> None:
    assert store.load(S) is None
    assert store.save(S, 1, b"one", "k1", '{"a": 1}')
    assert not store.save(S, 1, b"again", "k1b", None)  # version 1 only when absent
    assert store.save(S, 2, b"two", "k2", '{"a": 2}')
    assert not store.save(S, 2, b"stale", "k2b", None)  # a replica that lost the race
    assert not store.save(S, 4, b"ahead", "k4", None)
    stored = store.load(S)
    assert stored is not None
    assert (stored.version, stored.state, stored.last_key, stored.last_reply) == (
        2, b"two", "k2", '{"a": 2}'
    )  # fmt: skip
    # Deleting writes a tombstone at the next version: versions only grow.
    assert store.save(S, 3, None, None, None)
    gone = store.load(S)
    assert gone is not None and gone.deleted and gone.version == 3
    assert not store.save(S, 1, b"fresh", None, None)  # not "absent": it was deleted
    assert store.save(S, 4, b"fresh", None, None)
    fresh = store.load(S)
    assert fresh is not None and fresh.last_key is None and fresh.last_reply is None


def test_binary_state_round_trips(store: SessionStore) -> None:
    state = bytes(range(256)) * 40
    assert store.save(S, 1, state, "k", None)
    stored = store.load(S)
    assert stored is not None and stored.state == state


def test_tenants_and_sessions_are_separate_rows_and_listings(store: SessionStore) -> None:
    rows = [SessionKey("acme", "s1"), SessionKey("evil", "s1"), SessionKey("", "s1"),
            SessionKey("acme", "evil:s1"), SessionKey("acme", "s2")]  # fmt: skip
    for number, key in enumerate(rows):
        assert store.save(key, 1, f"state {number}".encode(), None, None)
    for number, key in enumerate(rows):
        stored = store.load(key)
        assert stored is not None and stored.state == f"state {number}".encode()
    assert store.save(SessionKey("acme", "s2"), 2, None, None, None)  # deleted: not listed
    assert store.sessions("acme", 10) == ["evil:s1", "s1"]
    assert store.sessions("evil", 10) == ["s1"]
    assert store.sessions("", 10) == ["s1"]
    assert store.sessions("acme", 1) == ["evil:s1"]
    assert store.sessions("nobody", 10) == []


def _copy_row(spec: str, namespace: str, source: SessionKey, target: SessionKey, *,
              version: int | None = None, target_namespace: str | None = None) -> None:  # fmt: skip
    """What write access to the store alone allows: copy one row's bytes over another's."""
    into = target_namespace or namespace
    if spec.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(spec)
        fields = client.hgetall(f"{namespace}:{source.tenant}/{source.session}")
        if version is not None:
            fields[b"v"] = str(version).encode()
        client.delete(f"{into}:{target.tenant}/{target.session}")
        client.hset(f"{into}:{target.tenant}/{target.session}", mapping=fields)
        client.close()
        return
    db = sqlite3.connect(spec)
    row = db.execute(
        "select version, state, seal, last_key, last_reply, updated from session_state "
        "where namespace = ? and tenant = ? and session = ?",
        (namespace, source.tenant, source.session),
    ).fetchone()
    values = (row[0] if version is None else version, *row[1:])
    db.execute(
        "insert or replace into session_state (namespace, tenant, session, version, state, "
        "seal, last_key, last_reply, updated) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (into, target.tenant, target.session, *values),
    )
    db.commit()
    db.close()


def test_a_sealed_state_copied_elsewhere_is_refused(spec: str, namespace: str) -> None:
    store = open_session_store(spec, namespace=namespace, secret=SECRET)
    other_service = open_session_store(spec, namespace=namespace + ":b", secret=SECRET)
    acme, evil = SessionKey("acme", "s1"), SessionKey("evil", "s1")
    try:
        assert store.save(acme, 1, b"acme's agent", "k", '{"r": 1}')
        assert store.save(evil, 1, b"evil's agent", "k", '{"r": 2}')
        assert store.save(acme, 2, b"acme's agent, later", "k2", None)
        # Into another tenant's row, another session's, another service's, another version.
        _copy_row(spec, namespace, acme, evil)
        with pytest.raises(SessionStateRefused, match="'s1'") as refused:
            store.load(evil)
        assert refused.value.reason == "forged"
        _copy_row(spec, namespace, acme, SessionKey("acme", "s2"))
        with pytest.raises(SessionStateRefused):
            store.load(SessionKey("acme", "s2"))
        _copy_row(spec, namespace, acme, acme, target_namespace=namespace + ":b")
        with pytest.raises(SessionStateRefused):
            other_service.load(acme)
        _copy_row(spec, namespace, acme, acme, version=7)
        with pytest.raises(SessionStateRefused):
            store.load(acme)
    finally:
        store.close()
        other_service.close()


def test_sealed_state_refuses_other_writers(spec: str, namespace: str) -> None:
    signed = open_session_store(spec, secret=SECRET, namespace=namespace)
    unsigned = open_session_store(spec, namespace=namespace, allow_unsigned=True)
    other = open_session_store(spec, secret="another secret, as long", namespace=namespace)
    try:
        assert signed.signed and not unsigned.signed
        assert signed.save(S, 1, b"agent", "k", None)
        loaded = signed.load(S)
        assert loaded is not None and loaded.state == b"agent"
        with pytest.raises(SessionStateRefused, match="not sealed"):
            other.load(S)
        forged = SessionKey("acme", "forged")
        assert unsigned.save(forged, 1, b"x" * 64, "k", None)  # write access alone
        with pytest.raises(SessionStoreError, match="'forged'"):
            signed.load(forged)
    finally:
        for opened in (signed, unsigned, other):
            opened.close()


def test_a_shared_store_without_a_secret_is_refused(tmp_path: Path, redis_url: str) -> None:
    for spec in (str(tmp_path / "shared.db"), redis_url):
        with pytest.raises(ConfigError, match="insecure-unsigned-state") as refused:
            open_session_store(spec)
        assert refused.value.field == "state_secret"
        open_session_store(spec, allow_unsigned=True).close()  # the explicit opt-in
    with pytest.raises(ConfigError, match="16 bytes"):
        open_session_store(tmp_path / "short.db", secret="short")
    SqliteSessionStore(":memory:").close()  # private to the process: nobody else writes it


def test_the_spec_picks_the_store(tmp_path: Path, redis_url: str) -> None:
    sqlite = open_session_store(tmp_path / "a.db", secret=SECRET)
    redis = open_session_store(redis_url, secret=SECRET)
    try:
        assert isinstance(sqlite, SqliteSessionStore)
        assert isinstance(redis, RedisSessionStore)
    finally:
        sqlite.close()
        redis.close()


def test_redis_sessions_expire_when_asked(redis_url: str) -> None:
    store = RedisSessionStore(redis_url, namespace="test:ttl", ttl_seconds=60, secret=SECRET)
    try:
        assert store.save(SessionKey("a", "t"), 1, b"x", None, None)
        remaining = store._client.ttl("test:ttl:a/t")
        assert 0 < remaining <= 60
    finally:
        store.close()
    with pytest.raises(ConfigError, match="ttl_seconds"):
        RedisSessionStore(redis_url, ttl_seconds=-1, secret=SECRET)


def test_an_unreachable_redis_is_a_clear_error() -> None:
    from llmagentos._processes import free_port

    with pytest.raises(ConfigError, match="cannot reach Redis"):
        RedisSessionStore(f"redis://127.0.0.1:{free_port()}/0", secret=SECRET)


async def test_a_service_whose_redis_dies_answers_503_and_recovers_nothing_lost() -> None:
    import httpx

    from llmagentos.build import build_agent
    from llmagentos.config import load_config
    from llmagentos.service import service_app
    from tests.redis_server import running_redis

    taxi = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"
    config = load_config(taxi)
    with running_redis() as (redis, url):
        store = RedisSessionStore(url, namespace="test:dies", secret=SECRET)
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
        store = RedisSessionStore(url, namespace="test:typed", secret=SECRET)
        redis.kill()
        redis.wait(5)
        with pytest.raises(SessionStoreUnavailable, match="session store"):
            store.load(S)
        with pytest.raises(SessionStoreUnavailable):
            store.save(S, 1, b"x", None, None)
        with pytest.raises(SessionStoreUnavailable):
            store.sessions("acme", 10)
        store.close()
