"""Response caching: :class:`CachedModel` and where it keeps replies.

Backends: :class:`MemoryCache` (an LRU in this process), :class:`SQLiteCache` (a file
shared by processes, WAL mode) and :class:`TieredCache` (memory in front of SQLite). The
key is the SHA-256 of ``request.canonical_json(model_id)``, so any change to the model,
messages, tools or settings is a different entry. Only deterministic requests are
cached by default (``temperature == 0`` or a ``seed``); errors never are.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import ValidationError

from llmagentos._blocking import run_blocking
from llmagentos._sqlite import use_wal
from llmagentos.exceptions import ConfigError
from llmagentos.llm.base import Model, WrapperModel, collect_stream
from llmagentos.llm.types import ModelRequest, ModelResponse, StreamEvent

__all__ = [
    "CacheEntry",
    "CacheStats",
    "CachedModel",
    "MemoryCache",
    "ResponseCache",
    "SQLiteCache",
    "TieredCache",
    "cache_key",
    "is_deterministic",
]

Clock = Callable[[], float]


def cache_key(request: ModelRequest, model_id: str) -> str:
    """The cache key of ``request`` sent to ``model_id``: a SHA-256 hex digest."""
    return hashlib.sha256(request.canonical_json(model_id).encode()).hexdigest()


def is_deterministic(request: ModelRequest) -> bool:
    """Whether a repeat should give the same reply: temperature 0 or a fixed seed.

    ``temperature=None`` means the backend's default, which is sampled for every common
    backend, so it counts as not deterministic.
    """
    settings = request.settings
    return settings.temperature == 0 or settings.seed is not None


@dataclass
class CacheStats:
    """Counters of one cache; ``expired`` lookups also count as misses."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0
    expired: int = 0
    errors: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A stored reply; ``expires_at`` is wall-clock time (``time.time()``), None = never."""

    response: ModelResponse
    expires_at: float | None = None


class ResponseCache(ABC):
    """Replies by key. Subclasses implement the sync methods; the async ones call them."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock
        self.stats = CacheStats()

    @abstractmethod
    def get_entry(self, key: str) -> CacheEntry | None:
        """The live entry for ``key`` (counted as a hit), or None (a miss)."""

    @abstractmethod
    def put_entry(self, key: str, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key``, replacing any older one."""

    @abstractmethod
    def clear(self) -> None:
        """Drop every entry."""

    @abstractmethod
    def __len__(self) -> int: ...

    async def aget_entry(self, key: str) -> CacheEntry | None:
        return self.get_entry(key)

    async def aput_entry(self, key: str, entry: CacheEntry) -> None:
        self.put_entry(key, entry)

    def get(self, key: str) -> ModelResponse | None:
        entry = self.get_entry(key)
        return None if entry is None else entry.response

    def set(self, key: str, response: ModelResponse, *, ttl: float | None = None) -> None:
        self.put_entry(key, CacheEntry(response, None if ttl is None else self.clock() + ttl))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files or connections."""


class MemoryCache(ResponseCache):
    """A least-recently-used cache in this process's memory (thread-safe)."""

    def __init__(self, max_entries: int | None = 1024, *, clock: Clock = time.time) -> None:
        if max_entries is not None and max_entries < 1:
            raise ConfigError("max_entries", f"must be >= 1 or None, got {max_entries}")
        super().__init__(clock=clock)
        self.max_entries = max_entries
        self._data: OrderedDict[str, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    def get_entry(self, key: str) -> CacheEntry | None:
        with self._lock:
            entry = self._data.get(key)
            expires_at = None if entry is None else entry.expires_at
            if expires_at is not None and self.clock() >= expires_at:
                del self._data[key]
                self.stats.expired += 1
                entry = None
            if entry is None:
                self.stats.misses += 1
                return None
            self._data.move_to_end(key)
            self.stats.hits += 1
            return entry

    def put_entry(self, key: str, entry: CacheEntry) -> None:
        with self._lock:
            self._data[key] = entry
            self._data.move_to_end(key)
            self.stats.stores += 1
            while self.max_entries is not None and len(self._data) > self.max_entries:
                self._data.popitem(last=False)
                self.stats.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, "
    "response TEXT NOT NULL, expires_at REAL)",
    "CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at)",
)


class SQLiteCache(ResponseCache):
    """A cache in an SQLite file that several processes may share (WAL journal).

    Lookups run inline: WAL readers never wait for writers, and a lookup costs tens of
    microseconds, less than a hop to a thread. Stores run in a worker thread of the
    runtime's own pool (:meth:`aput_entry`) because a write may wait for another
    process's lock. With ``max_entries`` the oldest-*stored* entries go first (an LRU
    would turn every hit into a write). SQLite errors are counted in ``stats.errors``
    and act as misses: a broken cache slows calls down but never fails them.
    """

    def __init__(
        self,
        path: str | Path,
        max_entries: int | None = None,
        *,
        clock: Clock = time.time,
        busy_timeout: float = 5.0,
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ConfigError("max_entries", f"must be >= 1 or None, got {max_entries}")
        super().__init__(clock=clock)
        self.path = Path(path)
        self.max_entries = max_entries
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Two connections so a reader never queues behind a writer waiting on a lock.
        self._writer = self._connect(busy_timeout)
        use_wal(self._writer)
        for statement in _SCHEMA:
            self._writer.execute(statement)
        self._reader = self._connect(busy_timeout)
        self._read_lock, self._write_lock = threading.Lock(), threading.Lock()

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable enough for a cache
        return conn

    def get_entry(self, key: str) -> CacheEntry | None:
        try:
            with self._read_lock:
                row = self._reader.execute(
                    "SELECT response, expires_at FROM responses WHERE key = ?", (key,)
                ).fetchone()
            if row is not None and row[1] is not None and self.clock() >= row[1]:
                self.stats.expired += 1  # the next store of this key replaces it
                row = None
            entry = None if row is None else CacheEntry(_load(row[0]), row[1])
        except (sqlite3.Error, ValidationError):
            self.stats.errors += 1
            entry = None
        if entry is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return entry

    def put_entry(self, key: str, entry: CacheEntry) -> None:
        text = entry.response.model_dump_json()
        try:
            with self._write_lock:
                conn = self._writer
                conn.execute("BEGIN IMMEDIATE")
                try:
                    cursor = conn.execute(
                        "INSERT OR REPLACE INTO responses (key, response, expires_at) "
                        "VALUES (?, ?, ?)",
                        (key, text, entry.expires_at),
                    )
                    conn.execute("DELETE FROM responses WHERE expires_at <= ?", (self.clock(),))
                    if self.max_entries is not None and cursor.lastrowid is not None:
                        # Ids grow with every store, so this keeps at most the newest
                        # max_entries rows with an index range delete instead of a count.
                        self.stats.evictions += conn.execute(
                            "DELETE FROM responses WHERE id <= ?",
                            (cursor.lastrowid - self.max_entries,),
                        ).rowcount
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            self.stats.stores += 1
        except sqlite3.Error:
            self.stats.errors += 1

    async def aput_entry(self, key: str, entry: CacheEntry) -> None:
        # Disk I/O under a lock: on the runtime's pool, never on the default executor,
        # where hung sync work of others could hold it up.
        await run_blocking(self.put_entry, key, entry)

    def clear(self) -> None:
        with self._write_lock:
            self._writer.execute("DELETE FROM responses")

    def __len__(self) -> int:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT COUNT(*) FROM responses WHERE expires_at IS NULL OR expires_at > ?",
                (self.clock(),),
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._read_lock, self._write_lock:
            self._reader.close()
            self._writer.close()


def _load(text: str) -> ModelResponse:
    return ModelResponse.model_validate_json(text)


class TieredCache(ResponseCache):
    """A fast cache (memory) in front of a shared one (SQLite); hits below are promoted."""

    def __init__(self, memory: ResponseCache, persistent: ResponseCache) -> None:
        super().__init__(clock=persistent.clock)
        self.memory, self.persistent = memory, persistent

    def _found(self, key: str, entry: CacheEntry | None, promote: bool) -> CacheEntry | None:
        if entry is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
            if promote:
                self.memory.put_entry(key, entry)
        return entry

    def get_entry(self, key: str) -> CacheEntry | None:
        entry = self.memory.get_entry(key)
        if entry is not None:
            return self._found(key, entry, promote=False)
        return self._found(key, self.persistent.get_entry(key), promote=True)

    async def aget_entry(self, key: str) -> CacheEntry | None:
        entry = self.memory.get_entry(key)
        if entry is not None:
            return self._found(key, entry, promote=False)
        return self._found(key, await self.persistent.aget_entry(key), promote=True)

    def put_entry(self, key: str, entry: CacheEntry) -> None:
        self.memory.put_entry(key, entry)
        self.persistent.put_entry(key, entry)
        self.stats.stores += 1

    async def aput_entry(self, key: str, entry: CacheEntry) -> None:
        self.memory.put_entry(key, entry)
        await self.persistent.aput_entry(key, entry)
        self.stats.stores += 1

    def clear(self) -> None:
        self.memory.clear()
        self.persistent.clear()

    def __len__(self) -> int:
        return len(self.persistent)

    def close(self) -> None:
        self.memory.close()
        self.persistent.close()


class CachedModel(WrapperModel):
    """Answers repeated requests from a cache; hits come back with ``cached=True``.

    Args:
        cache: where replies are kept (default: a fresh ``MemoryCache()``).
        ttl: seconds an entry lives (None: until evicted).
        cache_sampled: also cache requests that are not deterministic (see
            :func:`is_deterministic`); off by default, as a sampled reply is one draw.

    Concurrent identical misses on one event loop are coalesced: one inner call, the
    others wait for it and share its reply (or its error). ``uncacheable`` and
    ``coalesced`` count requests that bypassed the cache or joined another's call.
    """

    def __init__(
        self,
        inner: Model,
        *,
        cache: ResponseCache | None = None,
        ttl: float | None = None,
        cache_sampled: bool = False,
    ) -> None:
        if ttl is not None and ttl <= 0:
            raise ConfigError("ttl", f"must be > 0 seconds or None, got {ttl}")
        super().__init__(inner)
        self.cache = cache if cache is not None else MemoryCache()
        self.ttl, self.cache_sampled = ttl, cache_sampled
        self.uncacheable = self.coalesced = 0
        self._inflight: dict[str, asyncio.Future[ModelResponse]] = {}

    def key(self, request: ModelRequest) -> str | None:
        """The cache key of ``request``, or None when it is not to be cached."""
        if self.cache_sampled or is_deterministic(request):
            return cache_key(request, self.model_id)
        self.uncacheable += 1
        return None

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        key = self.key(request)
        if key is None:
            return await self.inner.arequest(request)
        entry = await self.cache.aget_entry(key)
        if entry is not None:
            return _as_cached(entry.response)
        return await self._miss(key, request)

    async def _miss(self, key: str, request: ModelRequest) -> ModelResponse:
        loop = asyncio.get_running_loop()
        while (pending := self._inflight.get(key)) is not None and pending.get_loop() is loop:
            self.coalesced += 1
            try:
                return await asyncio.shield(pending)  # our cancellation must not cancel it
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The leader was cancelled, not us: go round and call (or join) again.
        future: asyncio.Future[ModelResponse] = loop.create_future()
        self._inflight[key] = future
        try:
            response = await self.inner.arequest(request)
            stored = _as_cached(response)
            future.set_result(stored)
            await self._store(key, stored)
            return response
        except BaseException as err:
            if not future.done():
                if isinstance(err, Exception):
                    future.set_exception(err)
                    future.exception()  # marks it retrieved: no "never retrieved" warning
                else:
                    future.cancel()
            raise
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    async def _store(self, key: str, response: ModelResponse) -> None:
        expires = None if self.ttl is None else self.cache.clock() + self.ttl
        await self.cache.aput_entry(key, CacheEntry(_as_cached(response), expires))

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        key = self.key(request)
        entry = None if key is None else await self.cache.aget_entry(key)
        if entry is not None:
            hit = entry.response
            yield StreamEvent(
                text=hit.text or "",
                tool_calls=hit.tool_calls,
                finish_reason=hit.finish_reason,
                usage=hit.usage,
            )
            return
        events: list[StreamEvent] = []
        async for event in self.inner.astream(request):
            events.append(event)
            yield event
        # Only reached when the stream ran to its end: broken or abandoned ones aren't stored.
        if key is not None:
            await self._store(key, collect_stream(events, model=self.inner.model_id))

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        if not self.inner.supports_batching:
            return await Model.abatch(self, requests)  # one by one through arequest
        keys = [self.key(request) for request in requests]
        results: list[ModelResponse | None] = []
        for key in keys:
            entry = None if key is None else await self.cache.aget_entry(key)
            results.append(None if entry is None else _as_cached(entry.response))
        todo = [index for index, result in enumerate(results) if result is None]
        if todo:
            fresh = await self.inner.abatch([requests[index] for index in todo])
            for index, response in zip(todo, fresh, strict=True):
                results[index] = response
                if (key := keys[index]) is not None:
                    await self._store(key, response)
        return [result for result in results if result is not None]


def _as_cached(response: ModelResponse) -> ModelResponse:
    return response if response.cached else response.model_copy(update={"cached": True})
