"""Memory on a shared Postgres server (pgvector + full-text search), for many machines.

* ``namespaces`` and ``items`` live in one schema (default ``llmagentos``). ``items``
  holds the text, the metadata as ``jsonb`` (filters) beside its JSON text (returned as
  written: jsonb would turn ``1e16`` into an integer and reorder keys), a ``tsvector``
  generated column with a GIN index, and the vector as pgvector ``vector``.
* Lexical search is Postgres full-text search (English stemming and stop words): the
  query's words, each through ``plainto_tsquery`` and OR-ed, as ``fts_query`` does for
  SQLite, so no user text is read as query syntax; ranked by ``ts_rank_cd`` (length
  normalised), higher is better. Postgres ranks differently from SQLite's BM25 (no IDF).
  The index holds a text's first 250,000 characters (a tsvector is at most 1 MB).
* Vector search is cosine (``<=>``, score ``1 - distance``). Namespaces of up to
  ``ann_threshold`` items scan exactly. Larger ones use one HNSW index per dimension
  (a partial expression index ``WHERE dim = d``), not one per namespace: namespaces are
  unbounded (tenants x agents x kinds) and every partial index costs every insert and
  every plan, while embedding models are few. The index is built (concurrently) when
  the first namespace of its dimension outgrows ``ann_threshold``, so small stores never
  pay HNSW's insert cost. It is shared by namespaces, so its answer is filtered
  afterwards; when that leaves fewer than ``k`` hits the search scans exactly
  (pgvector 0.8+ iterative scans make that rare and are turned on).
* Every write locks its namespace's row first (then only that namespace's items), so
  writers of one namespace are serialised (keys, eviction) and writers of different
  namespaces run in parallel without deadlocks. Each batch is one transaction.
* Reads that count as use (LRU) are remembered per namespace and written with that
  namespace's next write, before eviction decides, so searches stay read-only.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from llmagentos.embeddings import Vectors
from llmagentos.exceptions import MemoryBackendError, MemoryNotFound
from llmagentos.memory.backend import NamespaceInfo, Row
from llmagentos.memory.filters import Filter
from llmagentos.memory.pg_connections import Pool, import_psycopg, redacted
from llmagentos.memory.pg_filters import postgres_where
from llmagentos.memory.pg_schema import TABLES, VECTOR_SCHEMA
from llmagentos.memory.types import MemoryItem, MemoryPolicy, Namespace
from llmagentos.memory.vector_index import DEFAULT_ANN_THRESHOLD

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresBackend", "query_terms"]

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TOKEN = re.compile(r"\w+", re.UNICODE)
_MAX_QUERY_TERMS = 64
_HNSW_MAX_DIM = 2000  # pgvector's limit for an HNSW index on vector
_COLUMNS = "seq, id, key, text, metadata_json, created_at, updated_at, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > %s)"
_CONFIG = "'english'::regconfig"
_APP = "llmagentos.memory"  # application_name: the store's sessions in pg_stat_activity


def query_terms(text: str) -> list[str]:
    """A user's text as search terms: its words, lowercased, each once (at most 64)."""
    return list(dict.fromkeys(t.lower() for t in _TOKEN.findall(text)))[:_MAX_QUERY_TERMS]


def _vector_text(vector: Vectors) -> str:
    # float32 round-trips through 9 significant digits.
    return "[" + ",".join(f"{x:.9g}" for x in np.asarray(vector, np.float32).tolist()) + "]"


class PostgresBackend:
    """Memory on a Postgres server with pgvector (``postgresql://user:pw@host:port/db``).

    Args:
        url: the server; ``?schema=NAME`` in it sets ``schema``.
        schema: the schema holding the tables (made if missing).
        pool_size: connections this process keeps at most (threads beyond wait).
        ann_threshold: items in a namespace above which vector search uses HNSW.
    """

    name = "postgres"

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = 4,
        ann_threshold: int = DEFAULT_ANN_THRESHOLD,
    ) -> None:
        psycopg = import_psycopg()
        self._errors: type[Exception] = psycopg.Error
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        schema = schema or dict(query).get("schema") or "llmagentos"
        if not _SCHEMA_NAME.fullmatch(schema):
            raise MemoryBackendError(
                f"schema must be lowercase letters, digits and _ (got {schema!r})",
                backend="postgres",
            )
        self.url = urlunsplit(
            parts._replace(query=urlencode([q for q in query if q[0] != "schema"]))
        )
        self.schema = schema
        self.backend = f"postgres:{redacted(self.url)}#{schema}"
        self.ann_threshold = ann_threshold
        self._search_path = schema
        self._lock_name = f"llmagentos.memory:{schema}"
        self._ns_cache: dict[Namespace, tuple[int, int | None]] = {}
        self._touched: dict[int, dict[int, float]] = {}
        self._touched_lock = threading.Lock()
        self._closed = False
        self._iterative_scan = False
        self._indexed: set[int] = set()  # dimensions with a valid HNSW index
        self._setup()
        self._pool = Pool(self._connect, max(1, pool_size))

    # -- connections -----------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        pg = import_psycopg()
        try:
            named = {} if "application_name" in self.url else {"application_name": _APP}
            conn: psycopg.Connection[Any] = pg.connect(
                self.url, autocommit=True, connect_timeout=10, **named
            )
            conn.execute("SELECT set_config('search_path', %s, false)", (self._search_path,))
        except pg.Error as err:
            raise MemoryBackendError(str(err).strip(), backend=self.backend) from err
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._pool.connection(self.backend) as conn:
            try:
                with conn.transaction(), conn.cursor() as cursor:
                    yield cursor
            except self._errors as err:
                raise MemoryBackendError(str(err).strip(), backend=self.backend) from err

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection(self.backend) as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except self._errors as err:
                raise MemoryBackendError(str(err).strip(), backend=self.backend) from err

    def _setup(self) -> None:
        psycopg = import_psycopg()
        conn = self._connect()  # search_path: the schema alone, until pgvector's is known
        try:
            with conn.transaction():
                # One process at a time makes the schema (CREATE ... IF NOT EXISTS races).
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_name,))
                if conn.execute(VECTOR_SCHEMA).fetchone() is None:
                    try:
                        with conn.transaction():
                            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    except psycopg.Error as err:
                        raise MemoryBackendError(
                            f"pgvector is not installed in this database and could not be ({err})."
                            " Install pgvector and run CREATE EXTENSION vector as a superuser",
                            backend=self.backend,
                        ) from err
                vector_schema, version = conn.execute(VECTOR_SCHEMA).fetchone() or ("public", "0")
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                self._search_path = f"{self.schema}, {vector_schema}"
                conn.execute("SELECT set_config('search_path', %s, true)", (self._search_path,))
                conn.execute(TABLES)
        except psycopg.Error as err:
            raise MemoryBackendError(str(err).strip(), backend=self.backend) from err
        finally:
            conn.close()
        major_minor = tuple(int(p) for p in re.findall(r"\d+", str(version))[:2])
        self._iterative_scan = major_minor >= (0, 8)

    # -- namespaces ------------------------------------------------------------------------

    @staticmethod
    def _info(row: tuple[Any, ...]) -> NamespaceInfo:
        _, tenant, agent, kind, embedder, dimension, ttl, max_items, eviction = row[:9]
        namespace = Namespace(tenant, agent, kind)
        return NamespaceInfo(namespace, embedder, dimension, MemoryPolicy(ttl, max_items, eviction))

    _NS_COLUMNS = "ns, tenant, agent, kind, embedder, dimension, ttl, max_items, eviction"

    def _ns(self, namespace: Namespace) -> tuple[int, int | None] | None:
        cached = self._ns_cache.get(namespace)
        if cached is None:
            rows = self._read(
                "SELECT ns, dimension FROM namespaces"
                " WHERE tenant = %s AND agent = %s AND kind = %s",
                (namespace.tenant, namespace.agent, namespace.kind),
            )
            if not rows:
                return None
            cached = (int(rows[0][0]), rows[0][1])
            self._ns_cache[namespace] = cached
        return cached

    def _require(self, namespace: Namespace) -> int:
        found = self._ns(namespace)
        if found is None:
            raise MemoryNotFound("namespace", str(namespace), str(namespace))
        return found[0]

    def create_namespace(self, info: NamespaceInfo) -> NamespaceInfo:
        n, policy = info.namespace, info.policy
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO namespaces (tenant, agent, kind, embedder, dimension, ttl, max_items,"
                " eviction) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (n.tenant, n.agent, n.kind, info.embedder, info.dimension, policy.ttl,
                 policy.max_items, policy.eviction),
            )  # fmt: skip
        found = self.namespace(n)
        assert found is not None
        return found

    def _has_index(self, dim: int) -> bool:
        if dim in self._indexed:
            return True
        rows = self._read(
            "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (self.schema, f"items_hnsw_{dim}"),
        )
        if rows and rows[0][0]:
            self._indexed.add(dim)
        return dim in self._indexed

    def _build_index(self, dim: int) -> None:
        """Build dimension ``dim``'s HNSW index, once a namespace of it outgrows exact
        scans: built CONCURRENTLY, so writers go on meanwhile; until it is valid,
        searches scan exactly. Small stores never pay HNSW's insert cost (a graph
        insert per row: about ten times a plain row's, measured on a loaded 2-core box)."""
        name = f"items_hnsw_{dim}"
        with self._pool.connection(self.backend) as conn:
            try:
                conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"{self._lock_name}:{dim}",))
                try:
                    valid = conn.execute(
                        "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c"
                        " ON c.oid = i.indexrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                        " WHERE n.nspname = %s AND c.relname = %s",
                        (self.schema, name),
                    ).fetchone()
                    if valid is not None and not valid[0]:  # a build that was interrupted
                        conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                    if valid is None or not valid[0]:
                        conn.execute(
                            f"CREATE INDEX CONCURRENTLY {name} ON items USING hnsw "
                            f"((embedding::vector({dim})) vector_cosine_ops) WHERE dim = {dim}"
                        )
                finally:
                    conn.execute(
                        "SELECT pg_advisory_unlock(hashtext(%s))", (f"{self._lock_name}:{dim}",)
                    )
            except self._errors as err:
                raise MemoryBackendError(str(err).strip(), backend=self.backend) from err
        self._indexed.add(dim)

    def namespace(self, namespace: Namespace) -> NamespaceInfo | None:
        rows = self._read(
            f"SELECT {self._NS_COLUMNS} FROM namespaces"
            " WHERE tenant = %s AND agent = %s AND kind = %s",
            (namespace.tenant, namespace.agent, namespace.kind),
        )
        return self._info(rows[0]) if rows else None

    def namespaces(self, tenant: str | None = None) -> list[NamespaceInfo]:
        if tenant is None:
            rows = self._read(
                f"SELECT {self._NS_COLUMNS} FROM namespaces ORDER BY tenant, agent, kind"
            )
        else:
            rows = self._read(
                f"SELECT {self._NS_COLUMNS} FROM namespaces WHERE tenant = %s ORDER BY agent, kind",
                (tenant,),
            )
        return [self._info(row) for row in rows]

    def set_policy(self, namespace: Namespace, policy: MemoryPolicy) -> None:
        with self._transaction() as cur:
            cur.execute(
                "UPDATE namespaces SET ttl = %s, max_items = %s, eviction = %s "
                "WHERE tenant = %s AND agent = %s AND kind = %s",
                (policy.ttl, policy.max_items, policy.eviction, namespace.tenant, namespace.agent,
                 namespace.kind),
            )  # fmt: skip

    # -- writes ----------------------------------------------------------------------------

    def _lock(self, cur: psycopg.Cursor[Any], ns: int) -> tuple[Any, ...]:
        """Lock the namespace's row (always first, so no two writers deadlock) and write
        the reads remembered since its last write."""
        cur.execute(
            "SELECT size, max_items, eviction FROM namespaces WHERE ns = %s FOR UPDATE", (ns,)
        )
        limits = cur.fetchone()
        assert limits is not None
        with self._touched_lock:
            touched = self._touched.pop(ns, {})
        if touched:
            cur.execute(
                "UPDATE items AS i SET accessed_at = greatest(i.accessed_at, t.at) FROM"
                " unnest(%s::bigint[], %s::float8[]) AS t(seq, at)"
                " WHERE i.seq = t.seq AND i.ns = %s",
                (list(touched), list(touched.values()), ns),
            )
        return tuple(limits)

    def write(self, namespace: Namespace, rows: Sequence[Row], now: float) -> tuple[list[str], int]:
        ns = self._require(namespace)
        params = [
            (ns, row.id, row.key, row.text, json.dumps(row.metadata), json.dumps(row.metadata),
             None if row.vector is None else len(row.vector),
             None if row.vector is None else _vector_text(row.vector),
             now, now, now, row.expires_at)
            for row in rows
        ]  # fmt: skip
        ids: list[str] = []
        with self._transaction() as cur:
            _, max_items, eviction = self._lock(cur, ns)
            cur.executemany(
                "INSERT INTO items (ns, id, key, text, metadata, metadata_json, dim, embedding,"
                " created_at, updated_at, accessed_at, expires_at) VALUES (%s, %s, %s, %s,"
                " %s::jsonb, %s, %s, %s::vector, %s, %s, %s, %s)"
                " ON CONFLICT (ns, key) DO UPDATE SET text = excluded.text,"
                " metadata = excluded.metadata, metadata_json = excluded.metadata_json,"
                " dim = excluded.dim, embedding = excluded.embedding,"
                " updated_at = excluded.updated_at, accessed_at = excluded.accessed_at,"
                " expires_at = excluded.expires_at RETURNING id",
                params,
                returning=True,
            )
            while True:
                (item_id,) = cur.fetchone() or (None,)
                ids.append(str(item_id))
                if not cur.nextset():
                    break
            evicted, size = self._evict(cur, ns, now, max_items, eviction)
        dim = self._ns_cache[namespace][1]
        big = size > self.ann_threshold and dim is not None and dim <= _HNSW_MAX_DIM
        if big and not self._has_index(int(dim or 0)):
            self._build_index(int(dim or 0))
        return ids, evicted

    def _evict(
        self, cur: psycopg.Cursor[Any], ns: int, now: float, max_items: int | None, eviction: str
    ) -> tuple[int, int]:
        """Drop expired items, then the least recently used (or oldest) past the limit;
        keep the namespace's size (which decides exact or HNSW search) exact. One round
        trip, two when over the limit: every part of a statement sees the snapshot from
        before its DELETE, so the live count is the total less the expired."""
        cur.execute(
            "WITH expired AS (DELETE FROM items WHERE ns = %s AND expires_at IS NOT NULL"
            " AND expires_at <= %s RETURNING 1), counts AS (SELECT (SELECT count(*) FROM"
            " expired) AS gone, (SELECT count(*) FROM items WHERE ns = %s) AS total)"
            " UPDATE namespaces SET size = counts.total - counts.gone FROM counts"
            " WHERE namespaces.ns = %s RETURNING counts.gone, namespaces.size",
            (ns, now, ns, ns),
        )
        gone, count = cur.fetchone() or (0, 0)
        if max_items is not None and count > max_items:
            order = "accessed_at" if eviction == "lru" else "created_at"
            cur.execute(
                "WITH evicted AS (DELETE FROM items WHERE seq IN (SELECT seq FROM items"
                f" WHERE ns = %s ORDER BY {order} ASC, seq ASC LIMIT %s) RETURNING 1)"
                " UPDATE namespaces SET size = size - (SELECT count(*) FROM evicted)"
                " WHERE ns = %s RETURNING (SELECT count(*) FROM evicted), size",
                (ns, count - max_items, ns),
            )
            evicted, count = cur.fetchone() or (0, count)
            gone += evicted
        return int(gone), int(count)

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
        found = self._ns(namespace)
        if found is None or "\x00" in item_id:
            return None
        ns = found[0]
        sets: list[str] = ["updated_at = %s", "accessed_at = %s"]
        params: list[Any] = [now, now]
        if text is not None:
            sets.append("text = %s")
            params.append(text)
        if metadata is not None:
            sets.append("metadata = %s::jsonb, metadata_json = %s")
            params += [json.dumps(metadata), json.dumps(metadata)]
        if expires_at is not False:
            sets.append("expires_at = %s")
            params.append(expires_at)
        if vector is not None:
            sets.append("dim = %s, embedding = %s::vector")
            params += [len(vector), _vector_text(vector)]
        with self._transaction() as cur:
            self._lock(cur, ns)
            cur.execute(
                f"UPDATE items SET {', '.join(sets)} WHERE ns = %s AND id = %s AND {_LIVE} "
                f"RETURNING {_COLUMNS}",
                [*params, ns, item_id, now],
            )
            row = cur.fetchone()
        return None if row is None else self._item(namespace, row)

    def delete(self, namespace: Namespace, ids: Sequence[str]) -> list[str]:
        found = self._ns(namespace)
        wanted = [i for i in ids if "\x00" not in i]  # Postgres text holds no NUL: not here
        if found is None or not wanted:
            return []
        ns = found[0]
        with self._transaction() as cur:
            self._lock(cur, ns)
            cur.execute(
                "DELETE FROM items WHERE ns = %s AND id = ANY(%s) RETURNING id", (ns, wanted)
            )
            gone = [str(r[0]) for r in cur.fetchall()]
            cur.execute("UPDATE namespaces SET size = size - %s WHERE ns = %s", (len(gone), ns))
        return gone

    def purge_expired(self, now: float) -> int:
        total = 0
        spaces = self._read(
            "SELECT DISTINCT ns FROM items WHERE expires_at IS NOT NULL AND expires_at <= %s",
            (now,),
        )
        for (ns,) in spaces:  # one namespace per transaction: its lock first, as writers do
            with self._transaction() as cur:
                self._lock(cur, int(ns))
                cur.execute(
                    "DELETE FROM items WHERE ns = %s"
                    " AND expires_at IS NOT NULL AND expires_at <= %s",
                    (ns, now),
                )
                total += cur.rowcount
                cur.execute(
                    "UPDATE namespaces SET size = size - %s WHERE ns = %s", (cur.rowcount, ns)
                )
        return total

    # -- reads -----------------------------------------------------------------------------

    @staticmethod
    def _item(namespace: Namespace, row: tuple[Any, ...]) -> MemoryItem:
        _, item_id, key, text, metadata, created, updated, expires = row[:8]
        return MemoryItem(
            item_id, namespace, text, json.loads(metadata), key, created, updated, expires
        )

    def _touch(self, ns: int, seqs: Sequence[int], now: float) -> None:
        if seqs:
            with self._touched_lock:
                touched = self._touched.setdefault(ns, {})
                for seq in seqs:
                    touched[int(seq)] = now

    def get(self, namespace: Namespace, ids: Sequence[str], now: float) -> list[MemoryItem]:
        found = self._ns(namespace)
        wanted = [i for i in ids if "\x00" not in i]
        if found is None or not wanted:
            return []
        rows = self._read(
            f"SELECT {_COLUMNS} FROM items WHERE ns = %s AND id = ANY(%s) AND {_LIVE}",
            (found[0], wanted, now),
        )
        self._touch(found[0], [r[0] for r in rows], now)
        by_id = {row[1]: self._item(namespace, row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def get_by_key(self, namespace: Namespace, key: str, now: float) -> MemoryItem | None:
        found = self._ns(namespace)
        if found is None or "\x00" in key:
            return None
        rows = self._read(
            f"SELECT {_COLUMNS} FROM items WHERE ns = %s AND key = %s AND {_LIVE}",
            (found[0], key, now),
        )
        if not rows:
            return None
        self._touch(found[0], [rows[0][0]], now)
        return self._item(namespace, rows[0])

    def count(self, namespace: Namespace, now: float) -> int:
        found = self._ns(namespace)
        if found is None:
            return 0
        rows = self._read(f"SELECT count(*) FROM items WHERE ns = %s AND {_LIVE}", (found[0], now))
        return int(rows[0][0])

    def list_items(
        self, namespace: Namespace, where: Filter | None, now: float, limit: int, offset: int
    ) -> list[MemoryItem]:
        found = self._ns(namespace)
        if found is None:
            return []
        params: list[Any] = [found[0], now]
        clause = "" if where is None else " AND " + postgres_where(where, params)
        rows = self._read(
            f"SELECT {_COLUMNS} FROM items WHERE ns = %s AND {_LIVE}{clause} "
            "ORDER BY created_at DESC, seq DESC LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        return [self._item(namespace, row) for row in rows]

    def lexical(
        self, namespace: Namespace, query: str, k: int, where: Filter | None, now: float
    ) -> list[tuple[MemoryItem, float]]:
        found = self._ns(namespace)
        terms = query_terms(query)
        if found is None or not terms:
            return []
        # Each word on its own through plainto_tsquery: never parsed as query syntax.
        tsquery = " || ".join([f"plainto_tsquery({_CONFIG}, %s)"] * len(terms))
        params: list[Any] = [*terms, found[0], now]
        clause = "" if where is None else " AND " + postgres_where(where, params)
        rows = self._read(
            f"SELECT {_COLUMNS}, ts_rank_cd(tsv, q, 1) AS rank FROM items, ({'SELECT ' + tsquery})"
            f" AS query(q) WHERE ns = %s AND tsv @@ q AND {_LIVE}{clause}"
            " ORDER BY rank DESC, seq ASC LIMIT %s",
            [*params, k],
        )
        self._touch(found[0], [r[0] for r in rows], now)
        return [(self._item(namespace, row), float(row[8])) for row in rows]

    def vector(
        self, namespace: Namespace, query: Vectors, k: int, where: Filter | None, now: float
    ) -> list[tuple[MemoryItem, float]]:
        found = self._ns(namespace)
        if found is None or found[1] is None:
            return []
        ns, dim = found[0], int(found[1])
        params: list[Any] = [_vector_text(query), ns, now]
        clause = "" if where is None else " AND " + postgres_where(where, params)
        size = self._read("SELECT size FROM namespaces WHERE ns = %s", (ns,))[0][0]
        rows: list[tuple[Any, ...]] | None = None
        if size > self.ann_threshold and dim <= _HNSW_MAX_DIM and self._has_index(dim):
            rows = self._ann(dim, params, clause, k)
        if rows is None:
            # Exact: the raw column matches no HNSW expression, so this scans the namespace.
            rows = self._read(
                f"SELECT {_COLUMNS}, embedding <=> %s::vector AS d FROM items WHERE ns = %s"
                f" AND dim = {dim} AND {_LIVE}{clause} ORDER BY d ASC, seq ASC LIMIT %s",
                [*params, k],
            )
        self._touch(ns, [r[0] for r in rows], now)
        return [
            (self._item(namespace, row), 0.0 if math.isnan(row[8]) else 1.0 - float(row[8]))
            for row in rows
        ]

    def _ann(
        self, dim: int, params: list[Any], clause: str, k: int
    ) -> list[tuple[Any, ...]] | None:
        """The HNSW answer, or ``None`` if filtering it left fewer than ``k`` hits."""
        cast = f"embedding::vector({dim})"
        with self._transaction() as cur:
            # The decision is made (the namespace is big): walk the graph. "ns + 0" keeps
            # the planner off the namespace's btree (stale row estimates pick it), and
            # with sequential scans off the HNSW index is the way left.
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute(f"SET LOCAL hnsw.ef_search = {min(1000, max(40, 2 * k))}")
            if self._iterative_scan:
                cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            cur.execute(
                f"SELECT * FROM (SELECT {_COLUMNS}, {cast} <=> %s::vector({dim}) AS d FROM items"
                f" WHERE ns + 0 = %s AND dim = {dim} AND {_LIVE}{clause}"
                f" ORDER BY {cast} <=> %s::vector({dim}) LIMIT %s) AS hits ORDER BY d, seq",
                [*params, params[0], k],
            )
            rows = cur.fetchall()
        return rows if len(rows) >= k else None

    # -- the rest --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        rows = self._read(
            "SELECT pg_total_relation_size('items'), (SELECT count(*) FROM items),"
            " (SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes"
            "  WHERE schemaname = %s AND indexname LIKE 'items_hnsw_%%')",
            (self.schema,),
        )
        bytes_, items, indexes = rows[0]
        return {
            "backend": "postgres",
            "url": redacted(self.url),
            "schema": self.schema,
            "items": int(items),
            "table_bytes": int(bytes_),
            "hnsw_indexes": list(indexes or []),
            "ann_threshold": self.ann_threshold,
        }

    def close(self) -> None:
        if self._closed:
            return
        with self._touched_lock:
            pending = list(self._touched)
        try:
            for ns in pending:  # the remembered reads, so LRU order survives a restart
                with self._transaction() as cur:
                    self._lock(cur, ns)
        finally:  # closed even if the server is gone (the reads are then lost, not the data)
            self._closed = True
            self._pool.close()
