"""What keeps search cheap on a large store: few rows scored lexically, rows read by key."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmagentos.kernel.embeddings import EmbeddingService
from llmagentos.memory import MemoryManager, NewMemory
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
    manager: MemoryManager,
) -> None:
    ns = _fill(manager)
    store = manager.store
    assert isinstance(store, SQLiteBackend)
    ns_id = store._ns_id(ns)  # type: ignore[arg-type]
    assert ns_id is not None
    words = ["the", "walrus", "reports", "filed"]

    def set_budget(rows: int) -> None:
        store.lexical_candidates = rows

    # Under the limit, every word that some row holds is kept (the search is plain BM25).
    assert store._selective_words(ns_id, [*words, "zebra"]) == words
    set_budget(100)
    # Rarest first ("walrus": 2 rows), then "report", "filed", "the" (300+ rows each).
    assert store._selective_words(ns_id, words) == ["walrus"]
    hits = manager.search(ns, "the walrus reports", k=5, mode="lexical").hits
    assert {h.item.text for h in hits} == {"the walrus report", "a walrus sighting was filed"}
    # Stemmed as the index stems: "reports" counts the rows holding "report".
    set_budget(305)
    assert store._selective_words(ns_id, ["reports", "walrus"]) == ["reports", "walrus"]
    # One word is never dropped, however common.
    set_budget(1)
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


def _vocab_reads(store: SQLiteBackend, search: Callable[[], object]) -> int:
    statements: list[str] = []
    connection = store._connection()
    connection.set_trace_callback(statements.append)
    try:
        search()
    finally:
        connection.set_trace_callback(None)
    return sum("vocab_" in s for s in statements)


def _filled_with_budget(manager: MemoryManager, rows: int) -> tuple[Any, SQLiteBackend]:
    ns = _fill(manager)
    store = manager.store
    assert isinstance(store, SQLiteBackend)
    store.lexical_candidates = rows
    return ns, store


def test_term_counts_are_remembered_until_the_namespace_grows_by_a_tenth(
    manager: MemoryManager,
) -> None:
    ns, store = _filled_with_budget(manager, 100)

    def search() -> list[str]:
        return [h.item.text for h in manager.search(ns, "the walrus", k=3, mode="lexical").hits]

    assert _vocab_reads(store, search) == 2  # "the", "walrus": counted once each
    assert _vocab_reads(store, search) == 0  # remembered
    # A few writes (under 10% more rows) keep the counts; "walrus" stays the rare word.
    manager.put(ns, [NewMemory(f"walrus number {i}") for i in range(20)])
    assert _vocab_reads(store, search) == 0
    # Past 10% the counts are read again: "walrus" now matches 122 rows, over the budget
    # with "the", so only the rarest word is scored... and it is still "walrus".
    manager.put(ns, [NewMemory(f"walrus herd {i}") for i in range(100)])
    assert _vocab_reads(store, search) == 2
    assert all("walrus" in text for text in search())


def test_a_word_no_row_held_is_looked_up_again_so_new_writes_are_found_at_once(
    manager: MemoryManager,
) -> None:
    ns, _ = _filled_with_budget(manager, 100)
    assert (
        manager.search(ns, "the narwhal", k=3, mode="lexical").hits[0].item.text.startswith("the")
    )
    manager.put(ns, [NewMemory("a narwhal surfaced", key="n")])  # one row: counts are kept
    hits = manager.search(ns, "the narwhal", k=3, mode="lexical").hits
    assert hits[0].item.text == "a narwhal surfaced"


def test_a_store_opened_by_another_process_sees_the_counts_drift(tmp_path: Path) -> None:
    # The row count comes from the full-text table itself, so another writer's rows count.
    first = MemoryManager(tmp_path / "m.db", embedder=None)
    second = MemoryManager(tmp_path / "m.db", embedder=None)
    try:
        ns = _fill(first)
        store = second.store
        assert isinstance(store, SQLiteBackend)
        store.lexical_candidates = 100
        assert _vocab_reads(store, lambda: second.search(ns, "the walrus", mode="lexical")) == 2
        first.put(ns, [NewMemory(f"walrus herd {i}") for i in range(100)])
        assert _vocab_reads(store, lambda: second.search(ns, "the walrus", mode="lexical")) == 2
    finally:
        first.close()
        second.close()


def test_hybrid_search_runs_its_lexical_and_vector_halves_at_once(tmp_path: Path) -> None:
    # Each half waits for the other to have started: searched one after the other, the
    # first would time out and the search would come back without its hits.
    started = {"lexical": threading.Event(), "vector": threading.Event()}
    met: list[bool] = []

    class Overlapping(SQLiteBackend):
        def lexical(self, *args: Any) -> Any:
            started["lexical"].set()
            met.append(started["vector"].wait(5))
            return super().lexical(*args)

        def vector(self, *args: Any) -> Any:
            started["vector"].set()
            met.append(started["lexical"].wait(5))
            return super().vector(*args)

    manager = MemoryManager(Overlapping(tmp_path / "m.db"), embedder="hash:64")
    try:
        ns = manager.namespace("t", "a", "semantic")
        manager.put(ns, ["the walrus report", "a narwhal sighting"])
        hits = manager.search(ns, "walrus", k=2, mode="hybrid").hits
    finally:
        manager.close()
    assert met == [True, True]
    assert hits[0].item.text == "the walrus report"
    assert hits[0].lexical_rank == 1 and hits[0].vector_rank is not None
