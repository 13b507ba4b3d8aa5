"""The kernel's embedding service: every agent's embedding calls, batched, cached, accounted.

::

    service = EmbeddingService()
    embedder = service.embedder_for("librarian", "local:minilm")   # an Embedder
    vectors = embedder.embed(["a passage", "another"]).vectors

* One backend per embedder id, shared by every agent that names it, with one worker
  thread. Requests queue at the backend; whenever the worker is free it takes every
  queued request that fits one batch (``max_batch`` texts) and embeds them in one call.
  There is no waiting window: a lone query is embedded at once, and under load the
  requests that arrived during one batch form the next (natural batching).
* A cache per backend (LRU, keyed by a digest of the text) answers texts already seen,
  so re-indexing an unchanged passage or repeating a query costs no model work.
* Each agent's texts, tokens, cache hits and time are counted (``state()``); an agent
  with a ``token_budget`` is refused (:class:`~llmagentos.exceptions.BudgetExceeded`)
  once it is spent. A batch's tokens are shared among its requests by text length.
* Sync callers block on the request's future; async callers await it without blocking
  their loop. The worker is the only thread that runs the embedder.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmagentos.embeddings import Embedder, Embeddings, Vectors, make_embedder
from llmagentos.exceptions import BudgetExceeded, MemoryBackendError, MemoryInputError

__all__ = ["AgentEmbedder", "EmbeddingService"]

_MAX_TEXT_CHARS = 100_000  # a passage, not a book: longer texts are cut by the model anyway


@dataclass(slots=True)
class _Usage:
    texts: int = 0
    tokens: int = 0
    cached: int = 0
    calls: int = 0
    seconds: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "texts": self.texts,
            "tokens": self.tokens,
            "cached": self.cached,
            "seconds": round(self.seconds, 6),
        }


@dataclass(slots=True)
class _Request:
    texts: list[str]
    future: Future[tuple[Vectors, int]] = field(default_factory=Future)


@dataclass(slots=True)
class EmbedReport:
    """What one call cost the caller."""

    embedded: int
    cached: int
    tokens: int
    seconds: float


class _Backend:
    def __init__(self, embedder: Embedder, *, cache_size: int) -> None:
        self.embedder = embedder
        self.cache_size = cache_size
        self.cache: OrderedDict[bytes, Vectors] = OrderedDict()
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.pending: deque[_Request] = deque()
        self.closed = False
        self.batches = 0
        self.batched_texts = 0
        self.largest_batch = 0
        self.busy_seconds = 0.0
        self.worker: threading.Thread | None = None

    # -- the cache ------------------------------------------------------------------------

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def cached(self, keys: list[bytes]) -> list[Vectors | None]:
        with self.lock:
            found: list[Vectors | None] = []
            for key in keys:
                vector = self.cache.get(key)
                if vector is not None:
                    self.cache.move_to_end(key)
                found.append(vector)
            return found

    def remember(self, keys: list[bytes], vectors: Vectors) -> None:
        if self.cache_size <= 0:
            return
        with self.lock:
            for key, vector in zip(keys, vectors, strict=True):
                self.cache[key] = vector
                self.cache.move_to_end(key)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)

    # -- the worker -----------------------------------------------------------------------

    def submit(self, texts: list[str]) -> Future[tuple[Vectors, int]]:
        request = _Request(texts)
        with self.lock:
            if self.closed:
                raise MemoryBackendError(
                    "the embedding service is closed", backend=self.embedder.model_id
                )
            self.pending.append(request)
            if self.worker is None:
                self.worker = threading.Thread(
                    target=self._run, name=f"llmagentos-embed-{self.embedder.model_id}", daemon=True
                )
                self.worker.start()
            self.wake.notify()
        return request.future

    def _take(self) -> list[_Request] | None:
        with self.lock:
            while not self.pending and not self.closed:
                self.wake.wait()
            if self.closed and not self.pending:
                return None
            batch = [self.pending.popleft()]
            size = len(batch[0].texts)
            limit = self.embedder.max_batch
            while self.pending and size + len(self.pending[0].texts) <= limit:
                request = self.pending.popleft()
                size += len(request.texts)
                batch.append(request)
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not live:
                continue
            texts = [t for r in live for t in r.texts]
            started = time.perf_counter()
            try:
                result = self.embedder.embed(texts)
                if result.vectors.shape != (len(texts), self.embedder.dimension):
                    raise MemoryBackendError(
                        f"returned vectors of shape {result.vectors.shape} for {len(texts)} texts",
                        backend=self.embedder.model_id,
                    )
            except BaseException as err:
                for request in live:
                    request.future.set_exception(err)
                continue
            elapsed = time.perf_counter() - started
            with self.lock:
                self.batches += 1
                self.batched_texts += len(texts)
                self.largest_batch = max(self.largest_batch, len(texts))
                self.busy_seconds += elapsed
            self._deliver(live, result, texts)

    @staticmethod
    def _deliver(live: list[_Request], result: Embeddings, texts: list[str]) -> None:
        total_chars = sum(len(t) for t in texts) or 1
        start = 0
        for request in live:
            end = start + len(request.texts)
            share = sum(len(t) for t in request.texts) / total_chars
            request.future.set_result((result.vectors[start:end], round(result.tokens * share)))
            start = end

    def close(self) -> None:
        with self.lock:
            self.closed = True
            failed = list(self.pending)
            self.pending.clear()
            self.wake.notify_all()
        for request in failed:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(
                    MemoryBackendError(
                        "the embedding service was closed", backend=self.embedder.model_id
                    )
                )
        self.embedder.close()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "model_id": self.embedder.model_id,
                "dimension": self.embedder.dimension,
                "queued": sum(len(r.texts) for r in self.pending),
                "batches": self.batches,
                "texts_embedded": self.batched_texts,
                "mean_batch": self.batched_texts / self.batches if self.batches else None,
                "largest_batch": self.largest_batch,
                "busy_seconds": round(self.busy_seconds, 6),
                "cache_items": len(self.cache),
                "cache_size": self.cache_size,
                "closed": self.closed,
            }


class AgentEmbedder(Embedder):
    """One agent's embedder on a service backend (get one from
    :meth:`EmbeddingService.embedder_for`). ``last_report`` is the calling thread's last
    call's cost; :meth:`embed_with_report` returns it with the vectors."""

    def __init__(self, service: EmbeddingService, agent: str, backend: _Backend) -> None:
        self.service = service
        self.agent = agent
        self._backend = backend
        self.model_id = backend.embedder.model_id
        self.dimension = backend.embedder.dimension
        self.max_batch = backend.embedder.max_batch

    def _prepare(self, texts: Sequence[str]) -> tuple[list[bytes], list[Vectors | None], list[int]]:
        if isinstance(texts, str):
            raise MemoryInputError("texts", "must be a list of strings, not one string")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise MemoryInputError(
                    f"texts[{i}]", f"must be a string (got {type(text).__name__})"
                )
        self.service._check_budget(self.agent)
        keys = [_Backend.key(t[:_MAX_TEXT_CHARS]) for t in texts]
        found = self._backend.cached(keys)
        missing = [i for i, v in enumerate(found) if v is None]
        return keys, found, missing

    def _finish(
        self,
        *,
        texts: Sequence[str],
        keys: list[bytes],
        found: list[Vectors | None],
        missing: list[int],
        computed: tuple[Vectors, int] | None,
        started: float,
    ) -> tuple[Embeddings, EmbedReport]:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, vector in enumerate(found):
            if vector is not None:
                out[i] = vector
        tokens = 0
        if computed is not None:
            vectors, tokens = computed
            out[missing] = vectors
            self._backend.remember([keys[i] for i in missing], vectors)
        report = EmbedReport(
            embedded=len(missing),
            cached=len(texts) - len(missing),
            tokens=tokens,
            seconds=time.perf_counter() - started,
        )
        self.service._account(self.agent, report)
        return Embeddings(out, tokens), report

    def embed_with_report(self, texts: Sequence[str]) -> tuple[Embeddings, EmbedReport]:
        started = time.perf_counter()
        keys, found, missing = self._prepare(texts)
        computed = None
        if missing:
            unique = _unique([texts[i][:_MAX_TEXT_CHARS] for i in missing])
            computed = _expand(self._backend.submit(unique[0]).result(), unique[1])
        return self._finish(
            texts=texts, keys=keys, found=found, missing=missing, computed=computed, started=started
        )

    async def aembed_with_report(self, texts: Sequence[str]) -> tuple[Embeddings, EmbedReport]:
        started = time.perf_counter()
        keys, found, missing = self._prepare(texts)
        computed = None
        if missing:
            unique = _unique([texts[i][:_MAX_TEXT_CHARS] for i in missing])
            raw = await asyncio.wrap_future(self._backend.submit(unique[0]))
            computed = _expand(raw, unique[1])
        return self._finish(
            texts=texts, keys=keys, found=found, missing=missing, computed=computed, started=started
        )

    def embed(self, texts: Sequence[str]) -> Embeddings:
        return self.embed_with_report(texts)[0]

    async def aembed(self, texts: Sequence[str]) -> Embeddings:
        return (await self.aembed_with_report(texts))[0]

    def close(self) -> None:
        """Nothing: the service owns the backend."""


def _unique(texts: list[str]) -> tuple[list[str], list[int]]:
    """The distinct texts, and for each input text the index of its distinct text."""
    index: dict[str, int] = {}
    where = [index.setdefault(t, len(index)) for t in texts]
    return list(index), where


def _expand(result: tuple[Vectors, int], where: list[int]) -> tuple[Vectors, int]:
    vectors, tokens = result
    return vectors[where], tokens


class EmbeddingService:
    """Embedding backends shared by the agents of a process (see the module docstring).

    Args:
        cache_size: vectors kept per backend (0 turns the cache off).
    """

    def __init__(self, *, cache_size: int = 50_000) -> None:
        self.cache_size = cache_size
        self._lock = threading.Lock()
        self._backends: dict[str, _Backend] = {}
        self._agents: dict[str, _Usage] = {}
        self._budgets: dict[str, int] = {}
        self._closed = False

    def add_backend(self, embedder: Embedder) -> None:
        """Serve ``embedder`` under its ``model_id`` (replacing nothing already served)."""
        with self._lock:
            if self._closed:
                raise MemoryBackendError(
                    "the embedding service is closed", backend=embedder.model_id
                )
            self._backends.setdefault(
                embedder.model_id, _Backend(embedder, cache_size=self.cache_size)
            )

    def embedder_for(
        self,
        agent: str,
        embedder: str | Embedder = "local:minilm",
        *,
        token_budget: int | None = None,
    ) -> AgentEmbedder:
        """``agent``'s handle on the backend for ``embedder`` (made on first use from its id)."""
        model_id = embedder if isinstance(embedder, str) else embedder.model_id
        with self._lock:
            backend = self._backends.get(model_id)
        if backend is None:
            self.add_backend(make_embedder(model_id) if isinstance(embedder, str) else embedder)
            with self._lock:
                backend = self._backends[model_id]
        with self._lock:
            self._agents.setdefault(agent, _Usage())
            if token_budget is not None:
                self._budgets[agent] = token_budget
        return AgentEmbedder(self, agent, backend)

    def _check_budget(self, agent: str) -> None:
        with self._lock:
            budget = self._budgets.get(agent)
            used = self._agents[agent].tokens if agent in self._agents else 0
        if budget is not None and used >= budget:
            raise BudgetExceeded(agent, "embedding tokens", budget, used)

    def _account(self, agent: str, report: EmbedReport) -> None:
        with self._lock:
            usage = self._agents.setdefault(agent, _Usage())
            usage.calls += 1
            usage.texts += report.embedded + report.cached
            usage.cached += report.cached
            usage.tokens += report.tokens
            usage.seconds += report.seconds

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot: per backend (batches, cache) and per agent (usage)."""
        with self._lock:
            backends = list(self._backends.items())
            agents = {name: usage.snapshot() for name, usage in self._agents.items()}
            for name, budget in self._budgets.items():
                agents[name]["token_budget"] = budget
        return {"backends": {name: b.snapshot() for name, b in backends}, "agents": agents}

    def close(self) -> None:
        """Fail queued requests and close every backend's embedder."""
        with self._lock:
            self._closed = True
            backends = list(self._backends.values())
        for backend in backends:
            backend.close()
