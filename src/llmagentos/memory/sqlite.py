"""The default memory store: one SQLite file with FTS5 full-text search and vector indexes.

* ``items`` holds every item: namespace, id, key, text, JSON metadata, the float32
  vector as a blob, and its times. Each namespace has an FTS5 table of its own over the
  text (Porter stemming on Unicode words), written in the same transaction as the item.
  Its own table means its own BM25 statistics: another tenant's documents change
  neither the scores nor the speed of a namespace's searches. Lexical scores are FTS5's
  BM25, negated so higher is better.
* A :class:`~llmagentos.memory.vector_index.VectorIndex` per namespace is built from the
  stored vectors on first vector search and kept up to date by this process's writes;
  each namespace has a version bumped by every write transaction, so a write by another
  process makes the index reload rather than answer stale.
* WAL mode: readers never wait for the writer; writes are serialised by a lock and each
  batch is one transaction, so a killed process loses no committed batch and leaves no
  half-written one.
* Reads that count as use (for LRU eviction) are remembered in memory and written with
  the next write transaction, so searches stay read-only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from llmagentos._sqlite import use_wal
from llmagentos.embeddings import Vectors
from llmagentos.exceptions import MemoryBackendError
from llmagentos.memory.backend import NamespaceInfo, Row
from llmagentos.memory.filters import Filter, sqlite_where
from llmagentos.memory.sqlite_lexical import (
    LEXICAL_CANDIDATES,
    QUERY_TERMS_SCHEMA,
    TermStatistics,
    fts_query,
    fts_table,
    query_words,
    vocab_table,
)
from llmagentos.memory.types import MemoryItem, MemoryPolicy, Namespace
from llmagentos.memory.vector_index import DEFAULT_ANN_THRESHOLD, VectorIndex

__all__ = ["SQLiteBackend", "by_rowid_sql"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
    ns INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL, agent TEXT NOT NULL, kind TEXT NOT NULL,
    embedder TEXT, dimension INTEGER,
    ttl REAL, max_items INTEGER, eviction TEXT NOT NULL DEFAULT 'lru',
    version INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant, agent, kind)
);
CREATE TABLE IF NOT EXISTS items (
    rowid INTEGER PRIMARY KEY,
    ns INTEGER NOT NULL REFERENCES namespaces(ns),
    id TEXT NOT NULL UNIQUE,
    key TEXT,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, accessed_at REAL NOT NULL,
    expires_at REAL,
    UNIQUE (ns, key)
);
CREATE INDEX IF NOT EXISTS items_by_use ON items (ns, accessed_at);
CREATE INDEX IF NOT EXISTS items_by_age ON items (ns, created_at);
CREATE INDEX IF NOT EXISTS items_by_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;
"""


_COLUMNS = "rowid, id, key, text, metadata, created_at, updated_at, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


def by_rowid_sql(count: int) -> str:
    """The statement that reads ``count`` items of a namespace by rowid.

    ``+ns``: without it SQLite's planner walks the namespace's ``(ns, ...)`` index, every
    row of it (~9 ms at 10k items), instead of looking the rowids up by primary key.
    """
    marks = ", ".join("?" * count)
    return f"SELECT {_COLUMNS} FROM items WHERE +ns = ? AND rowid IN ({marks}) AND {_LIVE}"


F = TypeVar("F", bound=Callable[..., Any])


def _serialised(method: F) -> F:
    """Hold the store's write lock for the whole call (transaction and index update)."""

    @functools.wraps(method)
    def locked(self: SQLiteBackend, *args: Any, **kwargs: Any) -> Any:
        with self._write_lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


class SQLiteBackend:
    """Memory in one SQLite file (``":memory:"`` is refused: readers need a shared file).

    Args:
        path: the database file (made with its folder if missing).
        ann_threshold: vectors per namespace above which an HNSW index serves searches.
        lexical_candidates: at most how many rows a lexical search scores, unless its
            rarest word alone matches more (:class:`TermStatistics`).
    """

    name = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        ann_threshold: int = DEFAULT_ANN_THRESHOLD,
        lexical_candidates: int = LEXICAL_CANDIDATES,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ann_threshold = ann_threshold
        self.lexical_candidates = lexical_candidates
        self._terms = TermStatistics()
        # Reentrant: a write holds it across its transaction and its index update, so
        # this process's indexes follow its commits in order (never a reload storm).
        self._write_lock = threading.RLock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._ns_cache: dict[Namespace, int] = {}
        self._ns_by_id: dict[int, Namespace] = {}
        self._indexes: dict[int, VectorIndex] = {}
        self._indexes_lock = threading.Lock()
        self._touched: dict[int, float] = {}
        self._touched_lock = threading.Lock()
        with self._write_lock:
            connection = self._connection()
            connection.executescript(_SCHEMA)

    # -- connections -----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise MemoryBackendError("the store is closed", backend=f"sqlite:{self.path}")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = sqlite3.connect(
                    self.path, timeout=30.0, isolation_level=None, check_same_thread=False
                )
                use_wal(connection)
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute("PRAGMA foreign_keys=ON")
                connection.executescript(QUERY_TERMS_SCHEMA)
            except sqlite3.Error as err:
                raise MemoryBackendError(str(err), backend=f"sqlite:{self.path}") from err
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            connection = self._connection()
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    self._flush_touches(connection)
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            except sqlite3.Error as err:
                raise MemoryBackendError(str(err), backend=f"sqlite:{self.path}") from err

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as err:
            raise MemoryBackendError(str(err), backend=f"sqlite:{self.path}") from err

    # -- namespaces ------------------------------------------------------------------------

    def _info(self, row: tuple[Any, ...]) -> NamespaceInfo:
        _, tenant, agent, kind, embedder, dimension, ttl, max_items, eviction = row[:9]
        namespace = Namespace(tenant, agent, kind)
        return NamespaceInfo(namespace, embedder, dimension, MemoryPolicy(ttl, max_items, eviction))

    def _ns_id(self, namespace: Namespace) -> int | None:
        ns = self._ns_cache.get(namespace)
        if ns is None:
            rows = self._read(
                "SELECT ns FROM namespaces WHERE tenant = ? AND agent = ? AND kind = ?",
                (namespace.tenant, namespace.agent, namespace.kind),
            )
            if not rows:
                return None
            ns = int(rows[0][0])
            self._ns_cache[namespace] = ns
            self._ns_by_id[ns] = namespace
        return ns

    def create_namespace(self, info: NamespaceInfo) -> NamespaceInfo:
        n, policy = info.namespace, info.policy
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO namespaces (tenant, agent, kind, embedder, dimension, ttl, max_items,"
                " eviction) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (n.tenant, n.agent, n.kind, info.embedder, info.dimension, policy.ttl,
                 policy.max_items, policy.eviction),
            )  # fmt: skip
            (ns,) = connection.execute(
                "SELECT ns FROM namespaces WHERE tenant = ? AND agent = ? AND kind = ?",
                (n.tenant, n.agent, n.kind),
            ).fetchone()
            connection.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts_table(ns)} USING fts5("
                "text, tokenize='porter unicode61')"
            )
            connection.execute(  # its terms' document frequencies, for _selective_words
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {vocab_table(ns)}"
                f" USING fts5vocab({fts_table(ns)}, 'row')"
            )
        found = self.namespace(n)
        assert found is not None
        return found

    def namespace(self, namespace: Namespace) -> NamespaceInfo | None:
        rows = self._read(
            "SELECT * FROM namespaces WHERE tenant = ? AND agent = ? AND kind = ?",
            (namespace.tenant, namespace.agent, namespace.kind),
        )
        return self._info(rows[0]) if rows else None

    def namespaces(self, tenant: str | None = None) -> list[NamespaceInfo]:
        if tenant is None:
            rows = self._read("SELECT * FROM namespaces ORDER BY tenant, agent, kind")
        else:
            rows = self._read(
                "SELECT * FROM namespaces WHERE tenant = ? ORDER BY agent, kind", (tenant,)
            )
        return [self._info(row) for row in rows]

    def set_policy(self, namespace: Namespace, policy: MemoryPolicy) -> None:
        with self._transaction() as connection:
            connection.execute(
                "UPDATE namespaces SET ttl = ?, max_items = ?, eviction = ? "
                "WHERE tenant = ? AND agent = ? AND kind = ?",
                (policy.ttl, policy.max_items, policy.eviction, namespace.tenant, namespace.agent,
                 namespace.kind),
            )  # fmt: skip

    def _require(self, namespace: Namespace) -> int:
        ns = self._ns_id(namespace)
        if ns is None:
            from llmagentos.exceptions import MemoryNotFound

            raise MemoryNotFound("namespace", str(namespace), str(namespace))
        return ns

    # -- items -----------------------------------------------------------------------------

    def _item(self, namespace: Namespace, row: tuple[Any, ...]) -> MemoryItem:
        _, item_id, key, text, metadata, created, updated, expires = row[:8]
        return MemoryItem(
            item_id, namespace, text, json.loads(metadata), key, created, updated, expires
        )

    def _bump(self, connection: sqlite3.Connection, ns: int) -> int:
        row = connection.execute(
            "UPDATE namespaces SET version = version + 1 WHERE ns = ? RETURNING version", (ns,)
        ).fetchone()
        return int(row[0])

    @_serialised
    def write(self, namespace: Namespace, rows: Sequence[Row], now: float) -> tuple[list[str], int]:
        ns = self._require(namespace)
        written: list[tuple[int, str]] = []
        with self._transaction() as connection:
            for row in rows:
                blob = None if row.vector is None else np.asarray(row.vector, np.float32).tobytes()
                result = connection.execute(
                    "INSERT INTO items (ns, id, key, text, metadata, vector, created_at,"
                    " updated_at, accessed_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (ns, key) DO UPDATE SET text = excluded.text,"
                    " metadata = excluded.metadata, vector = excluded.vector,"
                    " updated_at = excluded.updated_at, accessed_at = excluded.accessed_at,"
                    " expires_at = excluded.expires_at RETURNING rowid, id",
                    (ns, row.id, row.key, row.text, json.dumps(row.metadata), blob, now, now, now,
                     row.expires_at),
                ).fetchone()  # fmt: skip
                written.append((int(result[0]), str(result[1])))
                self._index_text(connection, ns, int(result[0]), row.text)
            evicted = self._evict(connection, ns, now)
            old_version = self._bump(connection, ns) - 1
        self._after_write(
            ns,
            old_version,
            [(r, row.vector) for (r, _), row in zip(written, rows, strict=True)],
            evicted,
        )
        return [item_id for _, item_id in written], len(evicted)

    @staticmethod
    def _index_text(connection: sqlite3.Connection, ns: int, rowid: int, text: str) -> None:
        connection.execute(f"DELETE FROM {fts_table(ns)} WHERE rowid = ?", (rowid,))
        connection.execute(
            f"INSERT INTO {fts_table(ns)} (rowid, text) VALUES (?, ?)", (rowid, text)
        )

    @staticmethod
    def _unindex(connection: sqlite3.Connection, ns: int, rowids: Sequence[int]) -> None:
        for start in range(0, len(rowids), 500):
            chunk = list(rowids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            connection.execute(f"DELETE FROM {fts_table(ns)} WHERE rowid IN ({marks})", chunk)

    def _evict(self, connection: sqlite3.Connection, ns: int, now: float) -> list[int]:
        """Drop expired items, then the least recently used (or oldest) past the limit."""
        gone = [
            int(r[0])
            for r in connection.execute(
                "DELETE FROM items WHERE ns = ? AND expires_at IS NOT NULL AND expires_at <= ?"
                " RETURNING rowid",
                (ns, now),
            ).fetchall()
        ]
        limits = connection.execute(
            "SELECT max_items, eviction FROM namespaces WHERE ns = ?", (ns,)
        ).fetchone()
        max_items, eviction = limits
        if max_items is not None:
            (count,) = connection.execute(
                "SELECT count(*) FROM items WHERE ns = ?", (ns,)
            ).fetchone()
            if count > max_items:
                order = "accessed_at" if eviction == "lru" else "created_at"
                gone += [
                    int(r[0])
                    for r in connection.execute(
                        f"DELETE FROM items WHERE rowid IN (SELECT rowid FROM items WHERE ns = ? "
                        f"ORDER BY {order} ASC, rowid ASC LIMIT ?) RETURNING rowid",
                        (ns, count - max_items),
                    ).fetchall()
                ]
        self._unindex(connection, ns, gone)
        return gone

    def _after_write(
        self, ns: int, old_version: int, added: list[tuple[int, Vectors | None]], removed: list[int]
    ) -> None:
        with self._indexes_lock:
            index = self._indexes.get(ns)
        if index is None:
            return
        with index.lock:
            if index.version != old_version:  # someone else wrote too: reload on next search
                index.version = -1
                return
            if removed:
                index.remove(removed)
            with_vectors = [(r, v) for r, v in added if v is not None]
            without = [r for r, v in added if v is None]
            if without:
                index.remove(without)
            if with_vectors:
                index.add([r for r, _ in with_vectors], np.stack([v for _, v in with_vectors]))
            index.version = old_version + 1

    def get(self, namespace: Namespace, ids: Sequence[str], now: float) -> list[MemoryItem]:
        ns = self._ns_id(namespace)
        if ns is None or not ids:
            return []
        found: dict[str, MemoryItem] = {}
        rowids: list[int] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            for row in self._read(
                f"SELECT {_COLUMNS} FROM items WHERE ns = ? AND id IN ({marks}) AND {_LIVE}",
                [ns, *chunk, now],
            ):
                found[row[1]] = self._item(namespace, row)
                rowids.append(int(row[0]))
        self._touch(rowids, now)
        return [found[i] for i in ids if i in found]

    def get_by_key(self, namespace: Namespace, key: str, now: float) -> MemoryItem | None:
        ns = self._ns_id(namespace)
        if ns is None:
            return None
        rows = self._read(
            f"SELECT {_COLUMNS} FROM items WHERE ns = ? AND key = ? AND {_LIVE}", (ns, key, now)
        )
        if not rows:
            return None
        self._touch([int(rows[0][0])], now)
        return self._item(namespace, rows[0])

    @_serialised
    def update(
        self,
        namespace: Namespace,
        item_id: str,
        *,
        text: str | None,
        metadata: dict[str, Any] | None,
        expires_at: float | bool | None,
        vector: Vectors | None,
        now: float,
    ) -> MemoryItem | None:
        ns = self._ns_id(namespace)
        if ns is None:
            return None
        sets: list[str] = ["updated_at = ?", "accessed_at = ?"]
        params: list[Any] = [now, now]
        if text is not None:
            sets.append("text = ?")
            params.append(text)
        if metadata is not None:
            sets.append("metadata = ?")
            params.append(json.dumps(metadata))
        if expires_at is not False:
            sets.append("expires_at = ?")
            params.append(expires_at)
        if vector is not None:
            sets.append("vector = ?")
            params.append(np.asarray(vector, np.float32).tobytes())
        with self._transaction() as connection:
            row = connection.execute(
                f"UPDATE items SET {', '.join(sets)} WHERE ns = ? AND id = ? AND {_LIVE} "
                f"RETURNING {_COLUMNS}",
                [*params, ns, item_id, now],
            ).fetchone()
            if row is None:
                return None
            if text is not None:
                self._index_text(connection, ns, int(row[0]), text)
            old_version = self._bump(connection, ns) - 1
        if vector is not None or text is not None:
            self._after_write(
                ns, old_version, [(int(row[0]), vector)] if vector is not None else [], []
            )
        else:
            self._after_write(ns, old_version, [], [])
        return self._item(namespace, row)

    @_serialised
    def delete(self, namespace: Namespace, ids: Sequence[str]) -> list[str]:
        ns = self._ns_id(namespace)
        if ns is None or not ids:
            return []
        gone: list[tuple[int, str]] = []
        with self._transaction() as connection:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ", ".join("?" * len(chunk))
                gone += connection.execute(
                    f"DELETE FROM items WHERE ns = ? AND id IN ({marks}) RETURNING rowid, id",
                    [ns, *chunk],
                ).fetchall()
            self._unindex(connection, ns, [int(r) for r, _ in gone])
            old_version = self._bump(connection, ns) - 1
        self._after_write(ns, old_version, [], [int(r) for r, _ in gone])
        return [str(i) for _, i in gone]

    def count(self, namespace: Namespace, now: float) -> int:
        ns = self._ns_id(namespace)
        if ns is None:
            return 0
        return int(
            self._read(f"SELECT count(*) FROM items WHERE ns = ? AND {_LIVE}", (ns, now))[0][0]
        )

    def list_items(
        self, namespace: Namespace, where: Filter | None, now: float, limit: int, offset: int
    ) -> list[MemoryItem]:
        ns = self._ns_id(namespace)
        if ns is None:
            return []
        params: list[Any] = [ns, now]
        clause = ""
        if where is not None:
            clause = " AND " + sqlite_where(where, params)
        rows = self._read(
            f"SELECT {_COLUMNS} FROM items WHERE ns = ? AND {_LIVE}{clause} "
            "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [self._item(namespace, row) for row in rows]

    @_serialised
    def purge_expired(self, now: float) -> int:
        with self._transaction() as connection:
            rows = connection.execute(
                "DELETE FROM items WHERE expires_at IS NOT NULL AND expires_at <= ?"
                " RETURNING rowid, ns",
                (now,),
            ).fetchall()
            by_ns: dict[int, list[int]] = {}
            for rowid, ns in rows:
                by_ns.setdefault(int(ns), []).append(int(rowid))
            for ns, rowids in by_ns.items():
                self._unindex(connection, ns, rowids)
            versions = {ns: self._bump(connection, ns) - 1 for ns in by_ns}
        for ns, rowids in by_ns.items():
            self._after_write(ns, versions[ns], [], rowids)
        return len(rows)

    # -- use, for LRU ----------------------------------------------------------------------

    def _touch(self, rowids: Sequence[int], now: float) -> None:
        if rowids:
            with self._touched_lock:
                for rowid in rowids:
                    self._touched[rowid] = now

    def _flush_touches(self, connection: sqlite3.Connection) -> None:
        with self._touched_lock:
            touched, self._touched = self._touched, {}
        if touched:
            connection.executemany(
                "UPDATE items SET accessed_at = max(accessed_at, ?) WHERE rowid = ?",
                [(t, r) for r, t in touched.items()],
            )

    # -- search ----------------------------------------------------------------------------

    def lexical(
        self, namespace: Namespace, query: str, k: int, where: Filter | None, now: float
    ) -> list[tuple[MemoryItem, float]]:
        ns = self._ns_id(namespace)
        if ns is None:
            return []
        match = fts_query(self._selective_words(ns, query_words(query)))
        if match is None:
            return []
        if where is None:
            found = self._lexical_ranked(namespace, ns, match, k, now)
            if found is not None:
                return found
        params: list[Any] = [match, ns, now]
        clause = ""
        if where is not None:
            clause = " AND " + sqlite_where(where, params, "i.metadata")
        rows = self._read(
            "SELECT i.rowid, i.id, i.key, i.text, i.metadata, i.created_at, i.updated_at,"
            f" i.expires_at, bm25({fts_table(ns)}) AS rank"
            f" FROM {fts_table(ns)} JOIN items AS i ON i.rowid = {fts_table(ns)}.rowid"
            f" WHERE {fts_table(ns)} MATCH ? AND i.ns = ?"
            f" AND (i.expires_at IS NULL OR i.expires_at > ?){clause}"
            " ORDER BY rank, i.rowid LIMIT ?",
            [*params, k],
        )
        self._touch([int(r[0]) for r in rows], now)
        return [(self._item(namespace, row), -float(row[8])) for row in rows]

    def _lexical_ranked(
        self, namespace: Namespace, ns: int, match: str, k: int, now: float
    ) -> list[tuple[MemoryItem, float]] | None:
        """The top ``k`` from the full-text table alone, then their rows by rowid: the
        table ranks its matches without a join per match (FTS5 orders by ``rank`` with a
        bounded sort). Expired rows cost hits, so it asks once more for a deeper list;
        ``None`` if that is still short (the caller joins instead)."""
        fts = fts_table(ns)
        for depth in (k + 8, 4 * k + 64):
            ranked = self._read(
                f"SELECT rowid, rank FROM {fts} WHERE {fts} MATCH ? ORDER BY rank, rowid LIMIT ?",
                (match, depth),
            )
            items = self._rows_by_rowid(namespace, ns, [int(r) for r, _ in ranked], now)
            hits = [(items[int(r)], -float(score)) for r, score in ranked if int(r) in items]
            if len(hits) >= k or len(ranked) < depth:
                hits = hits[:k]
                self._touch([int(r) for r, _ in ranked if int(r) in items][:k], now)
                return hits
        return None

    def _selective_words(self, ns: int, words: list[str]) -> list[str]:
        """``words`` rarest first within the candidate budget (:func:`selective_words`)."""
        try:
            return self._terms.selective_words(
                self._connection(), ns, words, self.lexical_candidates
            )
        except sqlite3.Error as err:
            raise MemoryBackendError(str(err), backend=f"sqlite:{self.path}") from err

    def _index(self, ns: int) -> VectorIndex:
        with self._indexes_lock:
            index = self._indexes.get(ns)
            if index is None:
                rows = self._read("SELECT dimension FROM namespaces WHERE ns = ?", (ns,))
                index = VectorIndex(int(rows[0][0] or 1), ann_threshold=self.ann_threshold)
                self._indexes[ns] = index
        with index.lock:
            (version,) = self._read("SELECT version FROM namespaces WHERE ns = ?", (ns,))[0]
            if index.version != version:
                self._load(ns, index, int(version))
        return index

    def _load(self, ns: int, index: VectorIndex, version: int) -> None:
        fresh = VectorIndex(index.dimension, ann_threshold=self.ann_threshold)
        rows = self._read(
            "SELECT rowid, vector FROM items WHERE ns = ? AND vector IS NOT NULL", (ns,)
        )
        if rows:
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(
                len(rows), -1
            )
            fresh.bulk_load([int(r[0]) for r in rows], vectors, graph=self._graph_path(ns, version))
        index.replace_with(fresh)
        index.version = version

    def _graph_path(self, ns: int, version: int) -> Path:
        """Where namespace ``ns``'s HNSW graph at ``version`` is kept between runs: a
        cache of the stored vectors (a graph of any other version is never used)."""
        return self.path.with_name(f"{self.path.name}.hnsw") / f"{int(ns)}-v{int(version)}.usearch"

    def _save_graphs(self) -> None:
        with self._indexes_lock:
            indexes = list(self._indexes.items())
        for ns, index in indexes:
            with index.lock:
                if index.kind != "hnsw" or index.version < 0:
                    continue
                target = self._graph_path(ns, index.version)
                target.parent.mkdir(parents=True, exist_ok=True)
                for old in target.parent.glob(f"{int(ns)}-v*.usearch"):
                    old.unlink(missing_ok=True)
                index.save_graph(target)

    def vector(
        self, namespace: Namespace, query: Vectors, k: int, where: Filter | None, now: float
    ) -> list[tuple[MemoryItem, float]]:
        ns = self._ns_id(namespace)
        if ns is None:
            return []
        index = self._index(ns)
        allowed: set[int] | None = None
        if where is not None:
            params: list[Any] = [ns, now]
            clause = sqlite_where(where, params)
            sql = f"SELECT rowid FROM items WHERE ns = ? AND {_LIVE} AND {clause}"
            allowed = {int(r[0]) for r in self._read(sql, params)}
            if not allowed:
                return []
        fetch = k
        while True:
            with index.lock:
                hits = index.search(query, fetch, allowed=allowed)
                size = len(index)
            items = self._rows_by_rowid(namespace, ns, [r for r, _ in hits], now)
            result = [(items[r], s) for r, s in hits if r in items]
            # Expired rows still in the index are dropped here; fetch more if they cost hits.
            if len(result) >= k or fetch >= size or len(hits) < fetch:
                self._touch([r for r, _ in hits if r in items][:k], now)
                return result[:k]
            fetch = min(size, fetch * 4)

    def _rows_by_rowid(
        self, namespace: Namespace, ns: int, rowids: list[int], now: float
    ) -> dict[int, MemoryItem]:
        if not rowids:
            return {}
        rows = self._read(by_rowid_sql(len(rowids)), [ns, *rowids, now])
        return {int(row[0]): self._item(namespace, row) for row in rows}

    # -- the rest --------------------------------------------------------------------------

    def vector_index(self, namespace: Namespace) -> VectorIndex | None:
        """The namespace's loaded index (for recall measurements and state)."""
        ns = self._ns_id(namespace)
        return None if ns is None else self._index(ns)

    def stats(self) -> dict[str, Any]:
        with self._indexes_lock:
            indexes = {
                str(self._ns_by_id.get(ns, ns)): index.stats()
                for ns, index in self._indexes.items()
            }
        size = self.path.stat().st_size if self.path.exists() else 0
        return {"backend": "sqlite", "path": str(self.path), "file_bytes": size, "indexes": indexes}

    def close(self) -> None:
        if self._closed:
            return
        with self._write_lock:
            with self._touched_lock:
                touched = bool(self._touched)
            if touched:
                connection = self._connection()
                connection.execute("BEGIN IMMEDIATE")
                self._flush_touches(connection)
                connection.execute("COMMIT")
            with contextlib.suppress(OSError):  # a cache: failing to save costs a rebuild
                self._save_graphs()
            self._closed = True
            with self._connections_lock:
                for connection in self._connections:
                    connection.close()
                self._connections.clear()
