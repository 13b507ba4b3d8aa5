"""The kernel's memory manager: namespaced stores every agent shares.

::

    memory = MemoryManager("runs/memory.db")            # SQLite; embeds with MiniLM
    notes = memory.for_agent("planner", tenant="acme")  # the agent's three kinds
    notes.skills.put("In maze 3, the east corridor is a dead end.")
    notes.skills.search("dead end", k=3).hits

Every item lives in a :class:`~llmagentos.memory.types.Namespace` (tenant → agent →
kind) and every call names one, so no call can reach another tenant's or agent's items:
an id from another namespace is simply not found. Writes store what they are given
and embed it (the embedding model, not a language model, and never anything else by
default); :mod:`llmagentos.memory.distill` is the explicit, budgeted way to have a
model summarise or extract facts first. Every call returns or records its cost.

Searches are ``lexical`` (the store's full-text index), ``vector`` (cosine over the
namespace's embeddings) or ``hybrid`` (both, fused by reciprocal rank), with metadata
filters (:mod:`llmagentos.memory.filters`). Each sync method has an async twin (``a``
prefix) that runs on the runtime's blocking pool, so the manager is safe to share
between threads and event loops.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from llmagentos._blocking import run_blocking
from llmagentos.embeddings import DEFAULT_EMBEDDER, Embedder, Vectors
from llmagentos.exceptions import EmbeddingMismatch, MemoryInputError, MemoryNotFound
from llmagentos.kernel.embeddings import AgentEmbedder, EmbeddingService
from llmagentos.memory.backend import MemoryBackend, NamespaceInfo, Row
from llmagentos.memory.distill import Distiller
from llmagentos.memory.filters import parse_filter
from llmagentos.memory.fusion import reciprocal_rank_fusion
from llmagentos.memory.spaces import AgentMemory
from llmagentos.memory.types import (
    Cost,
    Hit,
    MemoryItem,
    MemoryKind,
    MemoryPolicy,
    Namespace,
    NewMemory,
    SearchMode,
    SearchResult,
    WriteResult,
)
from llmagentos.memory.validation import (
    check_k,
    check_metadata,
    check_text,
    check_ttl,
    new_memories,
)
from llmagentos.telemetry.state import TELEMETRY

__all__ = ["MemoryManager", "default_path", "open_store"]

_UNSET: Any = object()
# The open meters of the current context (metered() blocks, innermost last).
_METERS: contextvars.ContextVar[tuple[Cost, ...]] = contextvars.ContextVar(
    "llmagentos_memory_meters", default=()
)
_PURGE_EVERY = 30.0  # seconds between sweeps of expired items (they are invisible at once)
_MODES: tuple[SearchMode, ...] = ("lexical", "vector", "hybrid")


def default_path() -> Path:
    """``$LLMAGENTOS_HOME/memory.db`` (default ``~/.llmagentos/memory.db``)."""
    return Path(os.environ.get("LLMAGENTOS_HOME", "~/.llmagentos")).expanduser() / "memory.db"


def open_store(store: MemoryBackend | str | Path | None) -> MemoryBackend:
    """A backend from a path (SQLite), a ``postgresql://`` URL, or a backend as it is."""
    if store is None:
        store = default_path()
    if isinstance(store, str | Path):
        text = str(store)
        if text.startswith(("postgresql://", "postgres://")):
            from llmagentos.memory.postgres import PostgresBackend

            return PostgresBackend(text)
        from llmagentos.memory.sqlite import SQLiteBackend

        if text == ":memory:":
            raise MemoryInputError("store", "use a file path: the store's readers share one file")
        return SQLiteBackend(text.removeprefix("sqlite:///"))
    return store


class _Usage:
    __slots__ = ("by_op",)

    def __init__(self) -> None:
        self.by_op: dict[str, list[float]] = {}  # op -> [calls, seconds, embedded, tokens]

    def add(self, op: str, cost: Cost) -> None:
        entry = self.by_op.setdefault(op, [0, 0.0, 0, 0])
        entry[0] += 1
        entry[1] += cost.seconds
        entry[2] += cost.embedded_texts
        entry[3] += cost.embedding_tokens + cost.model_tokens


class MemoryManager:
    """Namespaced memory on one store, with embeddings through the kernel.

    Args:
        store: a SQLite path (default ``~/.llmagentos/memory.db``), a ``postgresql://``
            URL, or a :class:`~llmagentos.memory.backend.MemoryBackend`.
        embedder: the embedder id (or object) new namespaces use; ``None`` makes new
            namespaces lexical only. A namespace keeps the embedder it was made with.
        embeddings: the embedding service (default: the process-wide kernel's).
        policy: the limits of new namespaces (TTL, size, eviction).
        clock: seconds since the epoch (tests pass a fake one for TTLs).
    """

    def __init__(
        self,
        store: MemoryBackend | str | Path | None = None,
        *,
        embedder: str | Embedder | None = DEFAULT_EMBEDDER,
        embeddings: EmbeddingService | None = None,
        policy: MemoryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = open_store(store)
        if embeddings is None:
            from llmagentos.kernel.default import embedding_service

            embeddings = embedding_service()
        self.embeddings = embeddings
        if isinstance(embedder, Embedder) and not isinstance(embedder, AgentEmbedder):
            embeddings.add_backend(embedder)
        self.embedder_id = embedder.model_id if isinstance(embedder, Embedder) else embedder
        self._dimensions: dict[str, int] = {}
        self.policy = policy or MemoryPolicy()
        self.clock = clock
        self._lock = threading.Lock()
        self._usage: dict[str, _Usage] = {}
        self._known: dict[Namespace, NamespaceInfo] = {}
        self._last_purge = 0.0
        self._pool: ThreadPoolExecutor | None = None

    # -- namespaces ------------------------------------------------------------------------

    def namespace(
        self,
        tenant: str,
        agent: str,
        kind: MemoryKind,
        *,
        policy: MemoryPolicy | None = None,
        embedder: str | object | None = _UNSET,
    ) -> Namespace:
        """Create the namespace if it is new (with ``policy`` and ``embedder``, else the
        manager's), and return it. An existing namespace keeps what it has; pass
        ``policy`` to change its limits."""
        namespace = Namespace(tenant, agent, kind)
        info = self._lookup(namespace)
        if info is None:
            embedder_id = self.embedder_id if embedder is _UNSET else embedder
            if embedder_id is not None and not isinstance(embedder_id, str):
                raise MemoryInputError(
                    "embedder", f"must be an embedder id or None (got {embedder_id!r})"
                )
            dimension = (
                None if embedder_id is None else self._embedder(namespace, embedder_id).dimension
            )
            info = self.store.create_namespace(
                NamespaceInfo(namespace, embedder_id, dimension, policy or self.policy)
            )
            with self._lock:
                self._known[namespace] = info
        elif policy is not None and policy != info.policy:
            self.set_policy(namespace, policy)
        return namespace

    def set_policy(self, namespace: Namespace, policy: MemoryPolicy) -> None:
        """Change a namespace's limits; the size limit applies from the next write."""
        info = self._info(namespace)
        self.store.set_policy(namespace, policy)
        with self._lock:
            self._known[namespace] = NamespaceInfo(namespace, info.embedder, info.dimension, policy)

    def namespaces(self, tenant: str | None = None) -> list[Namespace]:
        """Every namespace in the store (of ``tenant``, if given)."""
        return [info.namespace for info in self.store.namespaces(tenant)]

    def for_agent(
        self, agent: str, *, tenant: str = "default", policy: MemoryPolicy | None = None
    ) -> AgentMemory:
        """``agent``'s memory: its episodic, semantic and skill namespaces (made if new)."""
        return AgentMemory(self, tenant, agent, policy=policy)

    def _lookup(self, namespace: Namespace) -> NamespaceInfo | None:
        given: object = namespace
        if not isinstance(given, Namespace):
            raise MemoryInputError("namespace", f"must be a Namespace (got {type(given).__name__})")
        with self._lock:
            info = self._known.get(namespace)
        if info is None:
            info = self.store.namespace(namespace)
            if info is not None:
                with self._lock:
                    self._known[namespace] = info
        return info

    def _info(self, namespace: Namespace) -> NamespaceInfo:
        info = self._lookup(namespace)
        if info is None:
            raise MemoryNotFound("namespace", str(namespace), str(namespace))
        return info

    def _embedder(self, namespace: Namespace, embedder_id: str) -> AgentEmbedder:
        # Accounted to the namespace's owner: the tenant's agent (or collection).
        return self.embeddings.embedder_for(f"{namespace.tenant}/{namespace.agent}", embedder_id)

    # -- the calls -------------------------------------------------------------------------

    def _account(self, namespace: Namespace, op: str, cost: Cost) -> None:
        with self._lock:
            self._usage.setdefault(f"{namespace.tenant}/{namespace.agent}", _Usage()).add(op, cost)
        for meter in _METERS.get():
            meter.add(cost)

    @contextlib.contextmanager
    def metered(self) -> Iterator[Cost]:
        """Add up the cost of every call made inside the block (this task or thread,
        and the async twins it awaits): the cost of calls that return no result object
        (``get``, ``delete``, ``list``, ``count``), or of a whole step's memory work.

        ::

            with memory.metered() as cost:
                space.get(item_id)
                space.search("lessons", k=3)
            print(cost.seconds, cost.embedded_texts)
        """
        cost = Cost()
        token = _METERS.set((*_METERS.get(), cost))
        try:
            yield cost
        finally:
            _METERS.reset(token)

    def _vectors(self, info: NamespaceInfo, texts: list[str], cost: Cost) -> Vectors:
        assert info.embedder is not None
        embedder = self._embedder(info.namespace, info.embedder)
        result, report = embedder.embed_with_report(texts)
        if result.vectors.shape[1] != info.dimension:
            raise EmbeddingMismatch(
                str(info.namespace), "dimension", info.dimension, result.vectors.shape[1]
            )
        cost.embedded_texts += report.embedded
        cost.cached_embeddings += report.cached
        cost.embedding_tokens += report.tokens
        return result.vectors

    def put(
        self,
        namespace: Namespace,
        items: str | NewMemory | Sequence[str | NewMemory | Mapping[str, Any]],
        *,
        distill: Distiller | None = None,
    ) -> WriteResult:
        """Store ``items`` (texts, :class:`NewMemory` or mappings) in one transaction.

        An item with a ``key`` already in the namespace replaces it (same id): writes
        by key are idempotent, so a retried or resumed batch adds no duplicates.

        No model is called unless ``distill`` is given: then each text is replaced by
        what the model writes of it (its facts, or a summary; see
        :mod:`llmagentos.memory.distill`), each kept with the item's metadata plus
        ``distilled_from`` (the item's key or its position), and the model's tokens
        are in the cost.

        Raises:
            MemoryInputError: a bad item (names it: ``items[3].metadata.year``).
            MemoryNotFound: the namespace was never made.
            EmbeddingMismatch: a given vector's dimension is not the namespace's.
        """
        started = time.perf_counter()
        info = self._info(namespace)
        checked = new_memories(items)
        cost = Cost()
        if distill is not None:
            checked = self._distilled(checked, distill, cost)
        now = self.clock()
        vectors: list[Vectors | None] = [None] * len(checked)
        if info.embedder is not None:
            for i, item in enumerate(checked):
                if item.embedding is not None:
                    given = np.asarray(item.embedding, dtype=np.float32)
                    if given.shape != (info.dimension,):
                        raise EmbeddingMismatch(
                            str(namespace), "dimension", info.dimension, int(given.size)
                        )
                    norm = float(np.linalg.norm(given))
                    vectors[i] = given / norm if norm else given
            todo = [i for i, v in enumerate(vectors) if v is None]
            if todo:
                computed = self._vectors(info, [checked[i].text for i in todo], cost)
                for row, i in enumerate(todo):
                    vectors[i] = computed[row]
        elif any(item.embedding is not None for item in checked):
            raise EmbeddingMismatch(str(namespace), "embedder", None, "a vector")
        rows = []
        for item, vector in zip(checked, vectors, strict=True):
            ttl = item.ttl if item.ttl is not None else info.policy.ttl
            rows.append(
                Row(
                    uuid.uuid4().hex,
                    item.text,
                    item.metadata,
                    item.key,
                    None if ttl is None else now + ttl,
                    vector,
                )
            )
        ids, evicted = self.store.write(namespace, rows, now)
        self._maybe_purge(now)
        cost.seconds = time.perf_counter() - started
        self._account(namespace, "put", cost)
        return WriteResult(ids, cost, evicted)

    @staticmethod
    def _distilled(items: list[NewMemory], distiller: Distiller, cost: Cost) -> list[NewMemory]:
        out: list[NewMemory] = []
        for n, item in enumerate(items):
            made = distiller.distill(item.text)
            cost.model_tokens += made.tokens
            source = item.key if item.key is not None else f"#{n}"
            for i, text in enumerate(made.texts):
                key = None if item.key is None else f"{item.key}/{distiller.mode}/{i}"
                metadata = {**item.metadata, "distilled_from": source}
                out.append(NewMemory(text, metadata, key, item.ttl))
        return new_memories(out)

    def get(self, namespace: Namespace, item_id: str) -> MemoryItem:
        """The item with ``item_id``.

        Raises:
            MemoryNotFound: no live item with that id in this namespace.
        """
        return self.get_many(namespace, [item_id])[0]

    def get_many(self, namespace: Namespace, ids: Sequence[str]) -> list[MemoryItem]:
        """The items with ``ids``, in that order; raises :class:`MemoryNotFound` for the
        first one missing."""
        started = time.perf_counter()
        self._info(namespace)
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise MemoryInputError("ids", "must be a list of item ids")
        for i, item_id in enumerate(ids):
            if not isinstance(item_id, str):
                raise MemoryInputError(f"ids[{i}]", f"must be a string (got {item_id!r})")
        items = self.store.get(namespace, list(ids), self.clock())
        found = {item.id for item in items}
        for item_id in ids:
            if item_id not in found:
                raise MemoryNotFound("item", item_id, str(namespace))
        self._account(namespace, "get", Cost(seconds=time.perf_counter() - started))
        by_id = {item.id: item for item in items}
        return [by_id[i] for i in ids]

    def get_by_key(self, namespace: Namespace, key: str) -> MemoryItem:
        """The item written with ``key``; raises :class:`MemoryNotFound` if none."""
        self._info(namespace)
        if not isinstance(key, str):
            raise MemoryInputError("key", f"must be a string (got {key!r})")
        started = time.perf_counter()
        item = self.store.get_by_key(namespace, key, self.clock())
        if item is None:
            raise MemoryNotFound("key", key, str(namespace))
        self._account(namespace, "get", Cost(seconds=time.perf_counter() - started))
        return item

    def update(
        self,
        namespace: Namespace,
        item_id: str,
        *,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = _UNSET,
    ) -> MemoryItem:
        """Change an item's text (re-embedded), metadata (replaced whole) or TTL (from
        now; ``None`` removes it).

        Raises:
            MemoryNotFound: no live item with that id in this namespace.
        """
        started = time.perf_counter()
        info = self._info(namespace)
        cost = Cost()
        if text is not None:
            check_text("text", text)
        meta = None if metadata is None else check_metadata("metadata", metadata)
        now = self.clock()
        expires: float | bool | None = False
        if ttl is not _UNSET:
            checked_ttl = check_ttl("ttl", ttl)
            expires = None if checked_ttl is None else now + checked_ttl
        vector = None
        if text is not None and info.embedder is not None:
            vector = self._vectors(info, [text], cost)[0]
        item = self.store.update(
            namespace, item_id, text=text, metadata=meta, expires_at=expires, vector=vector, now=now
        )
        if item is None:
            raise MemoryNotFound("item", item_id, str(namespace))
        cost.seconds = time.perf_counter() - started
        self._account(namespace, "update", cost)
        return item

    def delete(self, namespace: Namespace, ids: str | Sequence[str]) -> int:
        """Delete items; all or none: if an id is not here, nothing is deleted.

        Raises:
            MemoryNotFound: naming the first id not in this namespace.
        """
        started = time.perf_counter()
        wanted = [ids] if isinstance(ids, str) else list(ids)
        self.get_many(namespace, wanted)  # every id must be here before any goes
        count = len(self.store.delete(namespace, wanted))
        self._account(namespace, "delete", Cost(seconds=time.perf_counter() - started))
        return count

    def search(
        self,
        namespace: Namespace,
        query: str,
        *,
        k: int = 10,
        mode: SearchMode = "hybrid",
        where: Mapping[str, Any] | None = None,
    ) -> SearchResult:
        """The ``k`` best items for ``query``.

        ``hybrid`` fuses the lexical and vector lists (each ``max(3k, 30)`` deep) by
        reciprocal rank; a namespace without an embedder answers ``lexical`` and says
        so in the result's ``mode``.

        Raises:
            MemoryInputError: a bad ``k``, ``mode`` or filter (naming the part).
            MemoryNotFound: the namespace was never made.
        """
        if TELEMETRY.on:
            from llmagentos.telemetry.memory_spans import traced_search

            return traced_search(namespace, query, k, mode, search=self._search, where=where)
        return self._search(namespace, query, k, mode, where)

    def _search(
        self,
        namespace: Namespace,
        query: str,
        k: int,
        mode: SearchMode,
        where: Mapping[str, Any] | None,
    ) -> SearchResult:
        started = time.perf_counter()
        info = self._info(namespace)
        check_text("query", query)
        check_k(k)
        if mode not in _MODES:
            raise MemoryInputError("mode", f"must be one of {', '.join(_MODES)} (got {mode!r})")
        tree = parse_filter(where)
        now = self.clock()
        cost = Cost()
        if info.embedder is None:
            if mode == "vector":
                raise MemoryInputError(
                    "mode", f"namespace {namespace} has no embedder: use 'lexical'"
                )
            mode = "lexical"
        depth = max(3 * k, 30) if mode == "hybrid" else k

        lexical: list[tuple[MemoryItem, float]] = []
        vector: list[tuple[MemoryItem, float]] = []
        if mode == "lexical":
            lexical = self.store.lexical(namespace, query, depth, tree, now)
        else:
            # The query is embedded first: the embedder uses every core by itself.
            query_vector = self._vectors(info, [query], cost)[0]
            if mode == "vector":
                vector = self.store.vector(namespace, query_vector, depth, tree, now)
            else:
                # The two searches overlap: the store releases the GIL while it works,
                # so a hybrid search costs about its slower half, not their sum.
                pending = self._search_pool().submit(
                    contextvars.copy_context().run,
                    self.store.vector, namespace, query_vector, depth, tree, now,
                )  # fmt: skip
                try:
                    lexical = self.store.lexical(namespace, query, depth, tree, now)
                finally:
                    vector = pending.result()
        if mode == "hybrid":
            hits = reciprocal_rank_fusion(lexical, vector, k)
        else:
            ranked = lexical if mode == "lexical" else vector
            hits = [
                Hit(
                    item,
                    score,
                    **({"lexical_rank": n} if mode == "lexical" else {"vector_rank": n}),
                )
                for n, (item, score) in enumerate(ranked[:k], start=1)
            ]
        cost.seconds = time.perf_counter() - started
        self._account(namespace, "search", cost)
        return SearchResult(hits, mode, cost)

    def list(
        self,
        namespace: Namespace,
        *,
        where: Mapping[str, Any] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[MemoryItem]:
        """Items newest first, optionally filtered, a page at a time."""
        self._info(namespace)
        check_k(limit)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise MemoryInputError("offset", f"must be a non-negative integer (got {offset!r})")
        started = time.perf_counter()
        items = self.store.list_items(namespace, parse_filter(where), self.clock(), limit, offset)
        self._account(namespace, "list", Cost(seconds=time.perf_counter() - started))
        return items

    def count(self, namespace: Namespace) -> int:
        """Live items in the namespace."""
        started = time.perf_counter()
        self._info(namespace)
        count = self.store.count(namespace, self.clock())
        self._account(namespace, "count", Cost(seconds=time.perf_counter() - started))
        return count

    def _maybe_purge(self, now: float) -> None:
        with self._lock:
            due = now - self._last_purge >= _PURGE_EVERY
            if due:
                self._last_purge = now
        if due:
            self.store.purge_expired(now)

    def purge_expired(self) -> int:
        """Delete expired items now (they are already invisible); returns how many."""
        return self.store.purge_expired(self.clock())

    # -- async twins -----------------------------------------------------------------------

    async def aput(
        self, namespace: Namespace, items: Any, *, distill: Distiller | None = None
    ) -> WriteResult:
        return await run_blocking(lambda: self.put(namespace, items, distill=distill))

    async def aget(self, namespace: Namespace, item_id: str) -> MemoryItem:
        return await run_blocking(self.get, namespace, item_id)

    async def asearch(self, namespace: Namespace, query: str, **options: Any) -> SearchResult:
        return await run_blocking(lambda: self.search(namespace, query, **options))

    async def aupdate(self, namespace: Namespace, item_id: str, **changes: Any) -> MemoryItem:
        return await run_blocking(lambda: self.update(namespace, item_id, **changes))

    async def adelete(self, namespace: Namespace, ids: str | Sequence[str]) -> int:
        return await run_blocking(self.delete, namespace, ids)

    # -- the view --------------------------------------------------------------------------

    def state(self, tenant: str | None = None) -> dict[str, Any]:
        """A JSON-able snapshot like the scheduler's: the store, each namespace (items,
        embedder, limits), each owner's calls and costs, and the embedding service."""
        now = self.clock()
        spaces = []
        for info in self.store.namespaces(tenant):
            spaces.append(
                {
                    "namespace": str(info.namespace),
                    "items": self.store.count(info.namespace, now),
                    "embedder": info.embedder,
                    "dimension": info.dimension,
                    "ttl": info.policy.ttl,
                    "max_items": info.policy.max_items,
                    "eviction": info.policy.eviction,
                }
            )
        with self._lock:
            owners = {
                owner: {
                    op: {
                        "calls": int(c),
                        "seconds": round(s, 6),
                        "embedded": int(e),
                        "tokens": int(t),
                    }
                    for op, (c, s, e, t) in usage.by_op.items()
                }
                for owner, usage in self._usage.items()
                if tenant is None or owner.startswith(f"{tenant}/")
            }
        state: dict[str, Any] = {
            "store": self.store.stats(),
            "namespaces": spaces,
            "owners": owners,
        }
        if tenant is None:
            state["embeddings"] = self.embeddings.state()
        return state

    def _search_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=min(8, os.cpu_count() or 2),
                    thread_name_prefix="llmagentos-memory-search",
                )
            return self._pool

    def close(self) -> None:
        """Close the store (the embedding service belongs to the kernel)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self.store.close()

    def __enter__(self) -> MemoryManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
