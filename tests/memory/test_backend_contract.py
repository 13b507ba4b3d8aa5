"""The backend conformance suite: every test runs on SQLite and on a real Postgres server,
through the MemoryManager, and both must behave the same.

Where the two legitimately rank differently (SQLite's BM25 against Postgres's
``ts_rank_cd``, which has no IDF), the tests assert the property a user relies on (the
relevant item comes first), never the scores.
"""

from __future__ import annotations

import itertools
import random
import signal
import string
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmagentos.exceptions import (
    EmbeddingMismatch,
    MemoryInputError,
    MemoryNotFound,
)
from llmagentos.kernel.embeddings import EmbeddingService
from llmagentos.memory import MemoryManager, MemoryPolicy, NewMemory, matches, parse_filter
from llmagentos.memory.validation import MAX_TEXT_CHARS


class Clock:
    """Fake time: each reading moves a millisecond on (so reads and writes are ordered
    for LRU), and ``advance`` jumps (for TTLs)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            self.now += 0.001
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(store_url: str, clock: Clock) -> Iterator[MemoryManager]:
    service = EmbeddingService()
    manager = MemoryManager(store_url, embedder="hash:64", embeddings=service, clock=clock)
    yield manager
    manager.close()
    service.close()


CORPUS = [
    "The library opens at nine in the morning and closes at six.",
    "Photosynthesis turns sunlight into chemical energy in plants.",
    "The old stone bridge was closed for repairs in March.",
    "Cats sleep for most of the day and hunt at night.",
    "A volcano erupted near the village, covering fields with ash.",
    "The recipe needs two eggs, flour and a pinch of salt.",
]


# -- the basic calls -------------------------------------------------------------------------


def test_put_get_update_delete_list_count(memory: MemoryManager, clock: Clock) -> None:
    ns = memory.namespace("acme", "notes", "semantic")
    written = memory.put(
        ns,
        [
            NewMemory("first note", {"year": 2023, "tags": ["a"], "big": 1e16}, key="k1"),
            {"text": "second note", "metadata": {"year": 2024}},
            "third note",
        ],
    )
    assert len(written.ids) == 3 and len(set(written.ids)) == 3 and written.evicted == 0
    first = memory.get(ns, written.ids[0])
    # Metadata comes back as written (floats stay floats, nested values whole).
    assert first.text == "first note" and first.key == "k1"
    assert first.metadata == {"year": 2023, "tags": ["a"], "big": 1e16}
    assert isinstance(first.metadata["big"], float)
    assert memory.get_by_key(ns, "k1").id == first.id
    assert [i.text for i in memory.get_many(ns, written.ids[::-1])] == [
        "third note",
        "second note",
        "first note",
    ]
    assert memory.count(ns) == 3
    # Newest first, paged.
    assert [i.text for i in memory.list(ns)] == ["third note", "second note", "first note"]
    assert [i.text for i in memory.list(ns, limit=1, offset=1)] == ["second note"]
    assert [i.text for i in memory.list(ns, where={"year": {"$gte": 2024}})] == ["second note"]

    before = clock.now
    changed = memory.update(ns, first.id, text="first note, revised", metadata={"year": 2025})
    assert changed.id == first.id and changed.updated_at > before
    assert changed.created_at == first.created_at
    again = memory.get(ns, first.id)
    assert again.text == "first note, revised" and again.metadata == {"year": 2025}
    assert memory.search(ns, "revised", mode="lexical").items[0].id == first.id
    assert memory.search(ns, "revised", mode="vector").items[0].id == first.id

    assert memory.delete(ns, [written.ids[1]]) == 1
    assert memory.count(ns) == 2
    with pytest.raises(MemoryNotFound, match=written.ids[1]):
        memory.get(ns, written.ids[1])
    with pytest.raises(MemoryNotFound, match="nope"):
        memory.get_by_key(ns, "nope")


def test_writing_a_key_again_replaces_the_item_and_keeps_its_id(memory: MemoryManager) -> None:
    ns = memory.namespace("acme", "docs", "semantic")
    first = memory.put(ns, [NewMemory("draft about tulips", {"v": 1}, key="doc#0"), "other"])
    original = memory.get(ns, first.ids[0])
    for version in (2, 3):
        again = memory.put(ns, [NewMemory("final text about roses", {"v": version}, key="doc#0")])
        assert again.ids == [first.ids[0]]
    assert memory.count(ns) == 2
    item = memory.get_by_key(ns, "doc#0")
    assert item.id == first.ids[0] and item.metadata == {"v": 3}
    assert item.text == "final text about roses" and item.created_at == original.created_at
    # The indexes follow the new text: the old words find nothing, the new ones the item.
    assert memory.search(ns, "tulips", mode="lexical").hits == []
    assert memory.search(ns, "roses", mode="lexical").items[0].id == item.id
    assert memory.search(ns, "roses", mode="vector", k=1).items[0].id == item.id


# -- isolation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [("globex", "notes", "semantic"), ("acme", "other", "semantic"), ("acme", "notes", "skill")],
    ids=["tenant", "agent", "kind"],
)
def test_another_namespace_never_sees_an_item(
    memory: MemoryManager, other: tuple[str, str, Any]
) -> None:
    mine = memory.namespace("acme", "notes", "semantic")
    theirs = memory.namespace(*other)
    secret = memory.put(mine, [NewMemory("the secret launch code is ziggurat", key="code")])
    memory.put(theirs, ["an unrelated public note"])
    item_id = secret.ids[0]
    with pytest.raises(MemoryNotFound):
        memory.get(theirs, item_id)
    with pytest.raises(MemoryNotFound):
        memory.get_by_key(theirs, "code")
    with pytest.raises(MemoryNotFound):
        memory.update(theirs, item_id, text="overwritten")
    with pytest.raises(MemoryNotFound):
        memory.delete(theirs, [item_id])
    for mode in ("lexical", "vector", "hybrid"):
        found = memory.search(theirs, "secret launch code ziggurat", mode=mode, k=10)  # type: ignore[arg-type]
        assert item_id not in {i.id for i in found.items}, mode
    assert all(i.id != item_id for i in memory.list(theirs, limit=1000))
    assert memory.count(theirs) == 1
    # ... and the item is untouched in its own namespace.
    assert memory.get(mine, item_id).text == "the secret launch code is ziggurat"
    # Writing the same key elsewhere makes a separate item.
    elsewhere = memory.put(theirs, [NewMemory("their own code", key="code")])
    assert elsewhere.ids != [item_id]
    assert memory.get_by_key(mine, "code").id == item_id


# -- search ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["lexical", "vector", "hybrid"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("when does the library open", 0),
        ("bridge repairs", 2),
        ("cats sleeping", 3),
        ("volcano ash", 4),
        ("eggs and flour", 5),
    ],
)
def test_each_mode_ranks_the_relevant_item_first(
    memory: MemoryManager, mode: str, query: str, expected: int
) -> None:
    # Scores differ between backends (BM25 vs ts_rank_cd; the same cosine), so the test
    # holds the ranking property, not the numbers.
    ns = memory.namespace("t", "corpus", "semantic")
    ids = memory.put(ns, CORPUS).ids
    result = memory.search(ns, query, mode=mode, k=3)  # type: ignore[arg-type]
    assert result.mode == mode
    assert result.items[0].id == ids[expected]
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    "query",
    ['"', 'say "hello', "NEAR(cats sleep)", "cats*", "*", "-cats", "-", "a:b", ":", "text:cats",
     "cats AND NOT dogs", "cats OR", "(", ")", "'", "''", "\\", "!&|<->", "cats & | !dogs",
     "^", "{near}"],
)  # fmt: skip
def test_query_syntax_is_read_as_plain_words(memory: MemoryManager, query: str) -> None:
    ns = memory.namespace("t", "syntax", "semantic")
    ids = memory.put(ns, CORPUS).ids
    for mode in ("lexical", "vector", "hybrid"):
        memory.search(ns, query, mode=mode, k=5)  # type: ignore[arg-type]
    if "cats" in query:
        assert memory.search(ns, query, mode="lexical", k=1).items[0].id == ids[3]


# -- metadata filters, against the reference ------------------------------------------------

_EXAMPLES = itertools.count()
FIELDS = ["a", "b", "c"]
SCALARS = st.one_of(
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, -1.5, 2.0, 1e16, 2**53]),
    st.sampled_from(["", "1", "true", "a", "B", "ab", "é", "z"]),
)
ORDERED = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.5, -1.5, 1e16]),
    st.sampled_from(["", "1", "B", "a", "é"]),
)
STORED = st.one_of(SCALARS, st.none(), st.just([1, "a"]), st.just({"x": 1}))
METADATA = st.dictionaries(st.sampled_from(FIELDS), STORED, max_size=3)
OPERAND = st.one_of(
    SCALARS,
    st.builds(lambda v: {"$eq": v}, SCALARS),
    st.builds(lambda v: {"$ne": v}, SCALARS),
    st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ORDERED),
    st.builds(lambda vs: {"$in": vs}, st.lists(SCALARS, min_size=1, max_size=3)),
    st.builds(lambda vs: {"$nin": vs}, st.lists(SCALARS, min_size=1, max_size=3)),
    st.builds(lambda lo, hi: {"$gte": lo, "$lt": hi}, st.integers(-3, 3), st.integers(-3, 3)),
)
LEAF = st.dictionaries(st.sampled_from(FIELDS), OPERAND, min_size=1, max_size=2)
FILTERS = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.builds(lambda parts: {"$and": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"$or": parts}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(metadatas=st.lists(METADATA, min_size=1, max_size=10), where=FILTERS)
def test_filters_select_exactly_what_matches_selects(
    memory: MemoryManager, metadatas: list[dict[str, Any]], where: dict[str, Any]
) -> None:
    ns = memory.namespace("t", f"f{next(_EXAMPLES)}", "semantic")  # a fresh one per example
    ids = memory.put(ns, [NewMemory(f"item {n}", m) for n, m in enumerate(metadatas)]).ids
    tree = parse_filter(where)
    expected = {i for i, m in zip(ids, metadatas, strict=True) if matches(tree, m)}
    listed = {i.id for i in memory.list(ns, where=where, limit=1000)}
    assert listed == expected, (where, metadatas)
    for mode in ("lexical", "vector"):
        found = memory.search(ns, "item", mode=mode, where=where, k=1000)  # type: ignore[arg-type]
        assert {i.id for i in found.items} == expected, (mode, where, metadatas)


# -- TTL and size limits ---------------------------------------------------------------------


def test_expired_items_are_invisible_at_once_and_purged(
    memory: MemoryManager, clock: Clock
) -> None:
    ns = memory.namespace("t", "ttl", "episodic", policy=MemoryPolicy(ttl=10))
    kept = memory.put(ns, [NewMemory("lasting note", ttl=1000)]).ids[0]
    brief = memory.put(ns, [NewMemory("brief note", key="b")]).ids[0]
    no_ttl = memory.put(ns, [NewMemory("pinned note")]).ids[0]
    memory.update(ns, no_ttl, ttl=None)
    assert memory.count(ns) == 3
    clock.advance(11)
    for mode in ("lexical", "vector", "hybrid"):
        assert brief not in {i.id for i in memory.search(ns, "note", k=5, mode=mode).items}  # type: ignore[arg-type]
    assert {i.id for i in memory.list(ns)} == {kept, no_ttl}
    assert memory.count(ns) == 2
    with pytest.raises(MemoryNotFound):
        memory.get(ns, brief)
    with pytest.raises(MemoryNotFound):
        memory.get_by_key(ns, "b")
    with pytest.raises(MemoryNotFound):
        memory.update(ns, brief, text="revived")
    assert memory.purge_expired() == 1
    assert memory.purge_expired() == 0
    clock.advance(2000)
    assert {i.id for i in memory.list(ns)} == {no_ttl}


@pytest.mark.parametrize("eviction", ["lru", "fifo"])
def test_the_size_limit_evicts_least_recently_used_or_oldest(
    memory: MemoryManager, eviction: str
) -> None:
    ns = memory.namespace(
        "t",
        "small",
        "skill",
        policy=MemoryPolicy(max_items=3, eviction=eviction),  # type: ignore[arg-type]
    )
    a, b, c = memory.put(ns, ["alpha lesson", "beta lesson", "gamma lesson"]).ids
    memory.get(ns, a)  # a use: LRU keeps a, FIFO does not care
    memory.search(ns, "gamma", mode="lexical", k=1)  # a search is a use too
    written = memory.put(ns, ["delta lesson"])
    assert written.evicted == 1 and memory.count(ns) == 3
    left = {i.id for i in memory.list(ns)}
    assert left == ({a, c} if eviction == "lru" else {b, c}) | set(written.ids)
    # A batch larger than the limit keeps the newest of the batch.
    batch = memory.put(ns, [f"lesson {n}" for n in range(5)])
    assert batch.evicted == 5 and memory.count(ns) == 3
    assert {i.id for i in memory.list(ns)} == set(batch.ids[2:])


# -- errors ----------------------------------------------------------------------------------


def test_delete_is_all_or_none(memory: MemoryManager) -> None:
    ns = memory.namespace("t", "del", "semantic")
    other = memory.namespace("t", "else", "semantic")
    ids = memory.put(ns, ["one", "two", "three"]).ids
    foreign = memory.put(other, ["foreign"]).ids[0]
    for bad in ("missing-id", foreign):
        with pytest.raises(MemoryNotFound, match=bad):
            memory.delete(ns, [ids[0], bad, ids[1]])
        assert memory.count(ns) == 3
    assert memory.count(other) == 1
    assert memory.delete(ns, ids[:2]) == 2 and memory.count(ns) == 1


def _put(*items: Any) -> Any:
    return lambda m, ns: m.put(ns, list(items))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (_put("ok", {"text": ""}), "items[1].text"),
        (_put({"text": "x", "metadata": {"when": object()}}), "items[0].metadata.when"),
        (_put({"text": "x", "metadata": {"v": float("nan")}}), "items[0].metadata.v"),
        (_put({"text": "x", "colour": 1}), "items[0].colour"),
        (_put(NewMemory("x", key="k"), NewMemory("y", key="k")), "items[1].key"),
        (_put(NewMemory("x", ttl=-1)), "items[0].ttl"),
        (_put(NewMemory("x\x00y")), "items[0].text"),
        (_put(NewMemory("x", key="a\x00")), "items[0].key"),
        (_put(NewMemory("x", {"s": ["a\x00"]})), "items[0].metadata.s[0]"),
        (_put(NewMemory("x", {"s\x00": 1})), "items[0].metadata"),
        (lambda m, ns: m.search(ns, "x", k=0), "k"),
        (lambda m, ns: m.search(ns, "x", mode="fuzzy"), "mode"),
        (lambda m, ns: m.search(ns, "   "), "query"),
        (lambda m, ns: m.search(ns, "x", where={"year": {"$gt": True}}), "where.year.$gt"),
        (lambda m, ns: m.search(ns, "x", where={"year": {"$near": 1}}), "where.year.$near"),
        (lambda m, ns: m.list(ns, where={"bad-name": 1}), "where.bad-name"),
        (lambda m, ns: m.list(ns, where={"$or": []}), "where.$or"),
        (lambda m, ns: m.list(ns, offset=-1), "offset"),
        (lambda m, ns: m.get_many(ns, "an-id"), "ids"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    memory: MemoryManager, call: Any, field: str
) -> None:
    ns = memory.namespace("t", "errors", "semantic")
    with pytest.raises(MemoryInputError) as raised:
        call(memory, ns)
    assert raised.value.field == field
    assert memory.count(ns) == 0


def test_a_text_of_the_largest_size_is_stored_and_found(memory: MemoryManager) -> None:
    # A million characters of distinct words: more than one Postgres tsvector holds, so
    # Postgres indexes the first 250,000 characters; the opening words are found on both.
    rng = random.Random(3)
    words = ["".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(120_000)]
    text = ("needle " + " ".join(words))[:MAX_TEXT_CHARS]
    ns = memory.namespace("t", "long", "semantic")
    item_id = memory.put(ns, [text, "a short note"]).ids[0]
    assert memory.get(ns, item_id).text == text
    assert memory.search(ns, "needle", mode="lexical", k=1).items[0].id == item_id


def test_a_given_vector_of_the_wrong_dimension_writes_nothing(memory: MemoryManager) -> None:
    ns = memory.namespace("t", "vec", "semantic")
    with pytest.raises(EmbeddingMismatch) as raised:
        memory.put(ns, [NewMemory("fine"), NewMemory("wrong", embedding=[0.1, 0.2, 0.3])])
    assert raised.value.expected == 64 and raised.value.got == 3
    assert memory.count(ns) == 0
    given = memory.put(ns, [NewMemory("given vector", embedding=[1.0] + [0.0] * 63)])
    assert memory.search(ns, "given vector", mode="vector", k=1).items[0].id == given.ids[0]


# -- concurrency and crashes -----------------------------------------------------------------


def test_concurrent_writers_lose_nothing(memory: MemoryManager) -> None:
    ns = memory.namespace("t", "busy", "episodic")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                memory.put(ns, [f"writer {n} event {i} a", f"writer {n} event {i} b"])
                # Keyed writes from every thread land on the same five items.
                memory.put(ns, [NewMemory(f"shared state {i % 5} by {n}", key=f"shared-{i % 5}")])
                memory.search(ns, f"writer {n}", k=3)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert memory.count(ns) == 6 * 15 * 2 + 5
    texts = {i.text for i in memory.list(ns, limit=1000)}
    assert all(
        f"writer {n} event {i} {s}" in texts for n in range(6) for i in range(15) for s in "ab"
    )


_WRITER = textwrap.dedent(
    """
    import sys, time
    from llmagentos.kernel.embeddings import EmbeddingService
    from llmagentos.memory import MemoryManager
    memory = MemoryManager(sys.argv[1], embedder="hash:64", embeddings=EmbeddingService())
    ns = memory.namespace("t", "crash", "episodic")
    batch = 0
    while True:
        items = [{"text": f"batch {batch} item {i}", "metadata": {"batch": batch}}
                 for i in range(int(sys.argv[2]))]
        print("start", batch, time.monotonic(), flush=True)
        memory.put(ns, items)
        print("done", batch, time.monotonic(), flush=True)
        batch += 1
    """
)


def test_a_writer_killed_mid_batch_leaves_only_whole_batches(store_url: str) -> None:
    size = 300
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, store_url, str(size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    committed: list[int] = []
    try:
        assert proc.stdout is not None
        started: dict[int, float] = {}
        took: list[float] = []
        while len(committed) < 3:
            what, batch, at = proc.stdout.readline().split()
            if what == "start":
                started[int(batch)] = float(at)
            else:
                committed.append(int(batch))
                took.append(float(at) - started[int(batch)])
        # Kill the next batch at 50-90% of a batch's time: inside its write, most likely.
        assert proc.stdout.readline().startswith("start")
        time.sleep(random.Random(7).uniform(0.5, 0.9) * sorted(took)[1])
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        committed += [int(line.split()[1]) for line in proc.stdout if line.startswith("done")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    service = EmbeddingService()
    memory = MemoryManager(store_url, embedder="hash:64", embeddings=service)
    ns = memory.namespace("t", "crash", "episodic")
    total = memory.count(ns)
    assert total % size == 0 and total // size >= len(committed)
    batches = total // size
    for batch in {0, batches - 1, *committed}:
        assert len(memory.list(ns, where={"batch": batch}, limit=1000)) == size
    assert memory.list(ns, where={"batch": batches}) == []
    memory.close()
    service.close()
