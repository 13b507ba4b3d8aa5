"""The memory manager above any backend: kernel embeddings, costs, state, the vector index."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from llmagentos.embeddings.hashing import HashingEmbedder
from llmagentos.exceptions import EmbeddingMismatch, MemoryInputError, MemoryNotFound
from llmagentos.kernel.embeddings import EmbeddingService
from llmagentos.memory import MemoryManager, MemoryPolicy, NewMemory
from llmagentos.memory.sqlite import SQLiteBackend
from llmagentos.memory.vector_index import VectorIndex


@pytest.fixture
def manager(tmp_path: Path) -> MemoryManager:
    service = EmbeddingService()
    memory = MemoryManager(tmp_path / "memory.db", embedder=HashingEmbedder(64), embeddings=service)
    yield memory
    memory.close()
    service.close()


FACTS = [
    "The library opens at nine in the morning.",
    "Photosynthesis turns light into chemical energy.",
    "The bridge was closed for repairs in March.",
    "Cats sleep for most of the day.",
]


def test_writes_and_searches_report_their_cost_and_are_accounted(manager: MemoryManager) -> None:
    notes = manager.for_agent("librarian", tenant="city")
    written = notes.semantic.put(FACTS)
    assert written.cost.embedded_texts == 4 and written.cost.embedding_tokens > 0
    assert written.cost.seconds > 0 and written.cost.model_tokens == 0
    found = notes.semantic.search("when does the library open", k=2)
    assert found.items[0].text == FACTS[0]
    assert found.cost.embedded_texts == 1
    again = notes.semantic.search("when does the library open", k=2)
    assert again.cost.cached_embeddings == 1 and again.cost.embedded_texts == 0
    state = manager.state()
    owner = state["owners"]["city/librarian"]
    assert owner["put"]["calls"] == 1 and owner["search"]["calls"] == 2
    assert state["embeddings"]["agents"]["city/librarian"]["texts"] == 6
    spaces = {s["namespace"]: s for s in state["namespaces"]}
    assert spaces["city/librarian/semantic"]["items"] == 4
    assert set(spaces) == {f"city/librarian/{k}" for k in ("episodic", "semantic", "skill")}
    assert manager.state(tenant="elsewhere")["namespaces"] == []


def test_hybrid_fuses_both_lists_and_says_where_each_hit_stood(manager: MemoryManager) -> None:
    space = manager.for_agent("a").semantic
    space.put(FACTS)
    result = space.search("bridge repairs", mode="hybrid", k=3)
    top = result.hits[0]
    assert top.item.text == FACTS[2]
    assert top.lexical_rank == 1 and top.vector_rank == 1
    assert result.hits == sorted(result.hits, key=lambda h: -h.score)
    lexical = space.search("bridge repairs", mode="lexical", k=3)
    assert all(h.vector_rank is None for h in lexical.hits)


def test_a_lexical_only_namespace_says_so(manager: MemoryManager) -> None:
    ns = manager.namespace("t", "plain", "semantic", embedder=None)
    manager.put(ns, FACTS)
    result = manager.search(ns, "cats sleep")
    assert result.mode == "lexical" and result.items[0].text == FACTS[3]
    assert result.cost.embedded_texts == 0
    with pytest.raises(MemoryInputError, match="mode"):
        manager.search(ns, "cats", mode="vector")


def test_given_embeddings_are_checked_before_anything_is_written(manager: MemoryManager) -> None:
    ns = manager.namespace("t", "vectors", "semantic")
    good = NewMemory("fine", embedding=[1.0] + [0.0] * 63)
    bad = NewMemory("wrong size", embedding=[1.0, 0.0, 0.0])
    with pytest.raises(EmbeddingMismatch, match="dimension"):
        manager.put(ns, [good, bad])
    assert manager.count(ns) == 0
    manager.put(ns, [good])
    hit = manager.search(ns, "anything", mode="vector", k=1)
    assert hit.items[0].text == "fine"


def test_a_namespace_keeps_its_embedder(tmp_path: Path) -> None:
    service = EmbeddingService()
    first = MemoryManager(tmp_path / "m.db", embedder=HashingEmbedder(64), embeddings=service)
    ns = first.namespace("t", "a", "semantic")
    first.put(ns, ["hello"])
    first.close()
    service.add_backend(HashingEmbedder(32))
    second = MemoryManager(tmp_path / "m.db", embedder="hash:32", embeddings=service)
    again = second.namespace("t", "a", "semantic")
    assert second.store.namespace(again).dimension == 64  # type: ignore[union-attr]
    assert second.search(again, "hello", mode="vector").items[0].text == "hello"
    second.close()
    service.close()


def test_unknown_namespace_and_ids_are_named(manager: MemoryManager) -> None:
    from llmagentos.memory import Namespace

    ghost = Namespace("t", "never", "semantic")
    with pytest.raises(MemoryNotFound, match="t/never/semantic"):
        manager.search(ghost, "x")
    space = manager.for_agent("a").episodic
    with pytest.raises(MemoryNotFound, match="nope"):
        space.get("nope")
    with pytest.raises(MemoryNotFound, match="nope"):
        space.update("nope", text="x")


def test_ttl_hides_expired_items_at_once(tmp_path: Path) -> None:
    now = [1000.0]
    service = EmbeddingService()
    memory = MemoryManager(
        tmp_path / "m.db", embedder=HashingEmbedder(64), embeddings=service, clock=lambda: now[0]
    )
    space = memory.for_agent("a", policy=MemoryPolicy(ttl=10)).episodic
    kept = space.put([NewMemory("lasting note", ttl=1000)]).ids[0]
    brief = space.put(["brief note"]).ids[0]
    now[0] += 11
    assert [i.id for i in space.search("note", k=5).items] == [kept]
    with pytest.raises(MemoryNotFound):
        space.get(brief)
    assert memory.purge_expired() == 1
    memory.close()
    service.close()


async def test_async_twins_from_many_tasks(manager: MemoryManager) -> None:
    space = manager.for_agent("async").episodic
    results = await asyncio.gather(*(space.aput([f"event {i}"]) for i in range(20)))
    assert len({r.ids[0] for r in results}) == 20
    found = await space.asearch("event 7", k=1, mode="lexical")
    assert found.items[0].text == "event 7"
    assert space.count() == 20


def test_threads_write_and_search_at_once(manager: MemoryManager) -> None:
    space = manager.for_agent("threads").semantic
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                space.put([NewMemory(f"thread {n} item {i}", {"n": n})])
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    def reader() -> None:
        try:
            for _ in range(25):
                space.search("thread item", k=5)
        except BaseException as err:  # pragma: no cover
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert space.count() == 100
    assert len(space.search("thread 3", k=100, where={"n": 3}, mode="vector").hits) == 25


def test_the_ann_index_takes_over_above_its_threshold_with_high_recall(tmp_path: Path) -> None:
    pytest.importorskip("usearch")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 64))
    vectors = centres[rng.integers(0, 50, 3000)] + 0.3 * rng.normal(size=(3000, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    service = EmbeddingService()
    memory = MemoryManager(
        SQLiteBackend(tmp_path / "m.db", ann_threshold=1000),
        embedder=HashingEmbedder(64),
        embeddings=service,
    )
    ns = memory.namespace("t", "big", "semantic")
    memory.put(
        ns, [NewMemory(f"item {i}", {"i": i}, embedding=v.tolist()) for i, v in enumerate(vectors)]
    )
    index = memory.store.vector_index(ns)  # type: ignore[attr-defined]
    assert index.kind == "hnsw" and len(index) == 3000
    queries = vectors[:50] + 0.05 * rng.normal(size=(50, 64))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    assert index.recall(queries, k=10) >= 0.95
    # A filtered search over few rows is exact and obeys the filter.
    hits = memory.search(ns, "item", mode="vector", where={"i": {"$lt": 30}}, k=5)
    assert hits.hits and all(h.item.metadata["i"] < 30 for h in hits.hits)
    memory.close()
    service.close()


def test_vector_index_add_remove_replace() -> None:
    index = VectorIndex(4)
    index.add([10, 11, 12], np.eye(4, dtype=np.float32)[:3])
    assert [r for r, _ in index.search(np.array([0, 1, 0, 0], np.float32), 1)] == [11]
    index.remove([11])
    assert 11 not in [r for r, _ in index.search(np.array([0, 1, 0, 0], np.float32), 3)]
    index.add([10], np.array([[0, 0, 0, 1]], np.float32))  # replace row 10's vector
    assert index.search(np.array([0, 0, 0, 1], np.float32), 1)[0][0] == 10
    assert len(index) == 2


def test_another_process_writing_makes_the_index_reload(
    manager: MemoryManager, tmp_path: Path
) -> None:
    space = manager.for_agent("shared").semantic
    space.put(["first note about apples"])
    assert space.search("apples", mode="vector", k=5).items[0].text == "first note about apples"
    script = textwrap.dedent(
        f"""
        from llmagentos.embeddings.hashing import HashingEmbedder
        from llmagentos.kernel.embeddings import EmbeddingService
        from llmagentos.memory import MemoryManager
        m = MemoryManager(
            {str(tmp_path / "memory.db")!r},
            embedder=HashingEmbedder(64),
            embeddings=EmbeddingService(),
        )
        m.for_agent("shared").semantic.put(["second note about pears"])
        m.close()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    texts = [i.text for i in space.search("pears", mode="vector", k=5).items]
    assert "second note about pears" in texts


def test_the_hnsw_graph_is_kept_between_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("usearch")
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(1500, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    service = EmbeddingService()

    def open_manager() -> MemoryManager:
        store = SQLiteBackend(tmp_path / "m.db", ann_threshold=1000)
        return MemoryManager(store, embedder=HashingEmbedder(32), embeddings=service)

    first = open_manager()
    ns = first.namespace("t", "kept", "semantic")
    first.put(ns, [NewMemory(f"v{i}", embedding=v.tolist()) for i, v in enumerate(vectors)])
    before = [h.item.text for h in first.search(ns, "q", mode="vector", k=5).hits]
    first.close()
    assert list((tmp_path / "m.db.hnsw").glob("*.usearch"))

    def no_rebuild(self: VectorIndex) -> None:
        raise AssertionError("the saved graph should have been used")

    monkeypatch.setattr(VectorIndex, "_build_ann", no_rebuild)
    second = open_manager()
    assert [h.item.text for h in second.search(ns, "q", mode="vector", k=5).hits] == before
    assert second.store.vector_index(ns).kind == "hnsw"  # type: ignore[attr-defined]
    second.put(ns, ["one more"])  # a new version: the old graph file no longer applies
    second.close()
    monkeypatch.undo()
    third = open_manager()
    assert third.count(ns) == 1501
    third.close()
    service.close()


def test_other_tenants_documents_do_not_change_a_tenants_scores(manager: MemoryManager) -> None:
    mine = manager.for_agent("a", tenant="one").semantic
    mine.put(FACTS)
    alone = [(h.item.text, h.score) for h in mine.search("bridge library", mode="lexical").hits]
    noisy = manager.for_agent("a", tenant="two").semantic
    noisy.put([f"the bridge and the library, part {i}" for i in range(200)])
    after = [(h.item.text, h.score) for h in mine.search("bridge library", mode="lexical").hits]
    assert after == alone


async def test_metered_adds_up_every_call_in_its_block(manager: MemoryManager) -> None:
    space = manager.for_agent("metered").semantic
    ids = space.put(FACTS).ids
    with manager.metered() as total:
        space.get(ids[0])
        space.count()
        space.list(limit=2)
        found = space.search("library", k=1)
        await space.asearch("photosynthesis energy", k=1)  # on the blocking pool: still counted
        space.delete(ids[1])
    assert total.seconds >= found.cost.seconds > 0
    assert total.embedded_texts == 2  # the two queries; nothing else embeds
    with manager.metered() as idle:
        pass
    assert idle.seconds == 0
