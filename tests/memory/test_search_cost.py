"""What keeps search cheap on a large store: few rows scored lexically, rows read by key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llmagentos.kernel.embeddings import EmbeddingService
from llmagentos.memory import MemoryManager, NewMemory, sqlite_lexical
from llmagentos.memory.sqlite import SQLiteBackend, by_rowid_sql


@pytest.fixture
def manager(tmp_path: Path) -> MemoryManager:
    service = EmbeddingService()
    memory = MemoryManager(tmp_path / "memory.db", embedder=None, embeddings=service)
    yield memory
    memory.close()
    service.close()


def _fill(manager: MemoryManager) -> object:
    ns = manager.namespace("t", "a", "semantic")
    texts = [f"the report number {i} was filed" for i in range(300)]
    texts += ["the walrus report", "a walrus sighting was filed"]
    manager.put(ns, [NewMemory(t, key=f"k{i}") for i, t in enumerate(texts)])
    return ns


def test_common_words_are_left_out_once_they_would_match_too_many_rows(
    manager: MemoryManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = _fill(manager)
    store = manager.store
    assert isinstance(store, SQLiteBackend)
    ns_id = store._ns_id(ns)  # type: ignore[arg-type]
    assert ns_id is not None
    words = ["the", "walrus", "reports", "filed"]
    # Under the limit, every word that some row holds is kept (the search is plain BM25).
    assert store._selective_words(ns_id, [*words, "zebra"]) == words
    monkeypatch.setattr(sqlite_lexical, "LEXICAL_CANDIDATES", 100)
    # Rarest first ("walrus": 2 rows), then "report", "filed", "the" (300+ rows each).
    assert store._selective_words(ns_id, words) == ["walrus"]
    hits = manager.search(ns, "the walrus reports", k=5, mode="lexical").hits
    assert {h.item.text for h in hits} == {"the walrus report", "a walrus sighting was filed"}
    # Stemmed as the index stems: "reports" counts the rows holding "report".
    monkeypatch.setattr(sqlite_lexical, "LEXICAL_CANDIDATES", 305)
    assert store._selective_words(ns_id, ["reports", "walrus"]) == ["reports", "walrus"]
    # One word is never dropped, however common.
    monkeypatch.setattr(sqlite_lexical, "LEXICAL_CANDIDATES", 1)
    assert len(manager.search(ns, "the", k=5, mode="lexical").hits) == 5


def test_items_are_read_by_rowid_not_by_scanning_the_namespace(
    manager: MemoryManager,
) -> None:
    _fill(manager)
    store = manager.store
    assert isinstance(store, SQLiteBackend)
    connection = sqlite3.connect(store.path)
    plan = connection.execute(f"EXPLAIN QUERY PLAN {by_rowid_sql(3)}", [1, 1, 2, 3, 0.0]).fetchall()
    connection.close()
    assert any("INTEGER PRIMARY KEY" in row[-1] for row in plan), plan
