"""What only the Postgres store has: its HNSW index, sharing by several machines, its URL,
and its failures (the behaviour both stores share is in test_backend_contract.py)."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from llmagentos._processes import free_port
from llmagentos.exceptions import MemoryBackendError, MissingExtraError
from llmagentos.kernel.embeddings import EmbeddingService
from llmagentos.memory import MemoryManager, NewMemory, open_store
from llmagentos.memory.postgres import PostgresBackend

psycopg = pytest.importorskip("psycopg", reason="needs the postgres extra")


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def service() -> Iterator[EmbeddingService]:
    embeddings = EmbeddingService()
    yield embeddings
    embeddings.close()


def _index_scans(url: str, schema: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes"
            " WHERE schemaname = %s AND indexrelname LIKE 'items_hnsw_%%'",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_big_namespaces_search_through_the_hnsw_index(
    postgres_url: str, schema: str, service: EmbeddingService
) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 64))
    vectors = centres[rng.integers(0, 20, 300)] + 0.3 * rng.normal(size=(300, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = PostgresBackend(postgres_url, schema=schema, ann_threshold=100)
    memory = MemoryManager(store, embedder="hash:64", embeddings=service)
    big = memory.namespace("t", "big", "semantic")
    small = memory.namespace("t", "small", "semantic")
    memory.put(small, ["a note in the small namespace"])
    assert store.stats()["hnsw_indexes"] == []  # nothing outgrew exact scans yet
    memory.put(
        big, [NewMemory(f"item {i}", {"i": i}, embedding=v.tolist()) for i, v in enumerate(vectors)]
    )
    assert store.stats()["hnsw_indexes"] == ["items_hnsw_64"]
    before = _index_scans(postgres_url, schema)
    queries = vectors[:20] + 0.05 * rng.normal(size=(20, 64))
    found = 0
    for query in queries:
        exact = set(np.argsort(-(vectors @ query))[:10].tolist())
        hits = store.vector(big, query.astype(np.float32), 10, None, time.time())
        assert len(hits) == 10 and all(item.namespace == big for item, _ in hits)
        found += len(exact & {item.metadata["i"] for item, _ in hits})
    assert found / (20 * 10) >= 0.9  # recall@10 of the graph against the exact answer
    # A filter the graph's candidates cannot fill falls back to an exact scan: all 5 come.
    few = memory.search(big, "item", mode="vector", where={"i": {"$lt": 5}}, k=10)
    assert sorted(i.metadata["i"] for i in few.items) == [0, 1, 2, 3, 4]
    # The small namespace shares the dimension's index but never sees the big one's items.
    assert [i.text for i in memory.search(small, "item", mode="vector", k=10).items] == [
        "a note in the small namespace"
    ]
    memory.close()  # a server process reports its index scans to pg_stat as it exits
    deadline = time.monotonic() + 10
    while _index_scans(postgres_url, schema) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _index_scans(postgres_url, schema) > before  # the graph answered, not a scan


def test_two_machines_share_one_store(
    postgres_url: str, schema: str, service: EmbeddingService
) -> None:
    url = f"{postgres_url}?schema={schema}"
    one = MemoryManager(url, embedder="hash:64", embeddings=service)
    two = MemoryManager(url, embedder="hash:64", embeddings=service)
    assert isinstance(one.store, PostgresBackend) and one.store.schema == schema
    ns_one = one.namespace("acme", "shared", "semantic")
    ns_two = two.namespace("acme", "shared", "semantic")
    written = one.put(ns_one, [NewMemory("the deploy key rotates on fridays", key="deploy")])
    # The other machine sees the write at once, in every mode (no cached index to reload).
    for mode in ("lexical", "vector", "hybrid"):
        assert two.search(ns_two, "deploy key", mode=mode, k=1).items[0].id == written.ids[0]  # type: ignore[arg-type]
    again = two.put(ns_two, [NewMemory("the deploy key rotates on mondays", key="deploy")])
    assert again.ids == written.ids and one.get(ns_one, written.ids[0]).text.endswith("mondays")
    assert one.state()["store"]["backend"] == "postgres"
    one.close()
    two.close()


def test_the_url_may_name_the_schema(postgres_url: str, schema: str) -> None:
    store = open_store(f"{postgres_url}?schema={schema}")
    assert isinstance(store, PostgresBackend)
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
            " ORDER BY table_name",
            (schema,),
        ).fetchall()
    assert [t[0] for t in tables] == ["items", "namespaces"]
    store.close()
    with pytest.raises(MemoryBackendError, match="schema"):
        PostgresBackend(postgres_url, schema="Robert'); DROP TABLE items;--")


def test_an_unreachable_server_is_a_backend_error_that_hides_the_password() -> None:
    url = f"postgresql://llm:hunter2@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(MemoryBackendError) as raised:
        PostgresBackend(url)
    assert "127.0.0.1" in str(raised.value) and "hunter2" not in str(raised.value)


def test_a_lost_connection_is_replaced(
    postgres_url: str, schema: str, service: EmbeddingService
) -> None:
    memory = MemoryManager(f"{postgres_url}?schema={schema}", embedder=None, embeddings=service)
    ns = memory.namespace("t", "a", "semantic")
    memory.put(ns, ["before the restart"])
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'llmagentos.memory' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    # The pooled connection is dead: at most one call fails, as a MemoryBackendError, and
    # the pool replaces it.
    try:
        memory.put(ns, ["after the restart"])
    except MemoryBackendError:
        memory.put(ns, ["after the restart"])
    assert {i.text for i in memory.list(ns)} >= {"before the restart", "after the restart"}
    memory.close()


def test_a_closed_store_says_so(postgres_url: str, schema: str) -> None:
    store = PostgresBackend(postgres_url, schema=schema)
    store.close()
    with pytest.raises(MemoryBackendError, match="closed"):
        store.namespaces()


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now fails
    with pytest.raises(MissingExtraError) as raised:
        open_store("postgresql://llm@127.0.0.1:1/postgres")
    assert raised.value.extra == "postgres"
