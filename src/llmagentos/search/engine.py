"""The search engine: a folder of documents indexed into a memory namespace, and queries.

:meth:`SearchEngine.index` is incremental and resumable:

* the manifest (:mod:`~llmagentos.search.manifest`) says which files are new, modified
  or deleted; unchanged files are not read;
* each file is loaded, chunked and its chunks written under their chunk keys, a batch
  of files per store transaction (the memory store's ``put``: one transaction, so a
  killed process loses no committed batch and leaves no half-written one);
* the manifest writes ahead: the batch's keys are marked pending before the chunks are
  written and the files recorded after, so a run killed in between redoes those files
  (the same keys replace, never add) and deletes chunks the new content no longer has;
* a file that cannot be parsed is reported by path and skipped (and remembered, so it
  is tried again only once it changes); the run goes on.

:meth:`SearchEngine.search` asks the memory manager for a hybrid (BM25 + vector,
reciprocal-rank fused) search of the namespace and can re-rank the candidates
(:mod:`~llmagentos.search.rerank`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmagentos.exceptions import ConfigError, DocumentError, MemoryNotFound
from llmagentos.search.chunking import Chunk, ChunkSettings, chunk_document
from llmagentos.search.documents import Document, load_document
from llmagentos.search.manifest import FileState, Manifest, ManifestEntry, scan

if TYPE_CHECKING:
    from llmagentos.memory import MemoryManager, Namespace, SearchMode
    from llmagentos.search.rerank import Reranker

__all__ = ["IndexEvent", "IndexReport", "SearchEngine", "SearchHit"]

_MANAGERS: Any = object()  # the embedder argument left out: the manager's default

EventKind = Literal["scanned", "indexed", "unchanged", "failed", "deleted"]


@dataclass(frozen=True, slots=True)
class IndexEvent:
    """Progress of an index run: ``scanned`` (``total`` files to read), then one event
    per file read (``indexed``, ``unchanged`` content, ``failed``) or ``deleted``."""

    kind: EventKind
    source: str = ""
    detail: str = ""
    total: int = 0


@dataclass
class IndexReport:
    """What an index run did: sources per outcome, chunks written and deleted, time."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    touched: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    still_failing: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "touched": self.touched,
            "deleted": self.deleted,
            "failed": [{"source": s, "reason": r} for s, r in self.failed],
            "still_failing": [{"source": s, "reason": r} for s, r in self.still_failing],
            "chunks_written": self.chunks_written,
            "chunks_deleted": self.chunks_deleted,
            "seconds": self.seconds,
        }


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One passage found: where it is, its text and its score (higher is better)."""

    source: str
    title: str
    heading_path: str
    text: str
    score: float
    chunk_index: int
    start: int
    end: int
    lexical_rank: int | None = None
    vector_rank: int | None = None
    rerank_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass
class _Pending:
    document: Document
    chunks: list[Chunk]
    entry: ManifestEntry | None


class SearchEngine:
    """An index of documents in one memory namespace (``tenant/search.<index>/semantic``).

    Args:
        memory: the memory manager holding the chunks.
        manifest: the index's manifest, or the path of its SQLite file.
        index: the index's name (part of the namespace).
        tenant: the tenant owning it.
        chunking: chunk sizes.
        batch_chunks: chunks per store transaction (and per embedding batch).
        embedder: the embedder id of a new namespace (``None``: lexical only; default:
            the manager's); an existing namespace keeps its own.
    """

    def __init__(
        self,
        memory: MemoryManager,
        manifest: Manifest | str | os.PathLike[str],
        *,
        index: str = "docs",
        tenant: str = "default",
        chunking: ChunkSettings | None = None,
        batch_chunks: int = 64,
        embedder: object = _MANAGERS,
    ) -> None:
        if isinstance(batch_chunks, bool) or batch_chunks < 1:
            raise ConfigError("batch_chunks", f"must be a positive integer, got {batch_chunks!r}")
        self.memory = memory
        self.manifest = manifest if isinstance(manifest, Manifest) else Manifest.open(manifest)
        self.chunking = chunking or ChunkSettings()
        self.batch_chunks = batch_chunks
        options: dict[str, Any] = {} if embedder is _MANAGERS else {"embedder": embedder}
        self.namespace: Namespace = memory.namespace(
            tenant, f"search.{index}", "semantic", **options
        )
        self._ensure_meta()

    def close(self) -> None:
        """Close the manifest (the memory manager is the caller's to close)."""
        self.manifest.close()

    def __enter__(self) -> SearchEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- indexing --------------------------------------------------------------------------

    def index(
        self,
        root: str | os.PathLike[str],
        *,
        rehash: bool = False,
        on_event: Callable[[IndexEvent], None] | None = None,
    ) -> IndexReport:
        """Bring the index up to date with the folder ``root`` (see the module docstring).

        Raises:
            DocumentError: ``root`` is not a folder.
            ConfigError: the index was built from another folder.
        """
        started = time.perf_counter()
        folder = Path(root)
        self._check_root(folder)
        emit = on_event or (lambda event: None)
        changes = self.manifest.compare(scan(folder), rehash=rehash)
        report = IndexReport(unchanged=len(changes.unchanged) - len(changes.still_failing))
        report.still_failing = [(e.source, e.error or "") for e in changes.still_failing]
        emit(IndexEvent("scanned", total=len(changes.to_read) + len(changes.deleted)))
        batch: list[_Pending] = []
        for state in changes.to_read:
            pending = self._read(state, folder, report, emit)
            if pending is None:
                continue
            batch.append(pending)
            if sum(len(p.chunks) for p in batch) >= self.batch_chunks:
                self._write(batch, report, emit)
                batch = []
        if batch:
            self._write(batch, report, emit)
        for entry in changes.deleted:
            report.chunks_deleted += self._delete_keys(entry.stored_keys)
            with self.manifest.transaction():
                self.manifest.forget(entry.source)
            if entry.sha256:  # not a file first seen by a run killed before it finished
                report.deleted.append(entry.source)
            emit(IndexEvent("deleted", entry.source))
        report.seconds = time.perf_counter() - started
        return report

    def _read(
        self, state: FileState, root: Path, report: IndexReport, emit: Callable[[IndexEvent], None]
    ) -> _Pending | None:
        """Load and chunk one file; ``None`` when it failed or its content is unchanged."""
        entry = self.manifest.get(state.source)
        try:
            document = load_document(state.path, root=root)
        except DocumentError as err:
            with self.manifest.transaction():
                if entry is not None:
                    self._delete_keys(entry.stored_keys)  # its old content is gone
                self.manifest.record_failure(state, err.reason)
            report.failed.append((state.source, err.reason))
            emit(IndexEvent("failed", state.source, err.reason))
            return None
        if (
            entry is not None
            and not entry.pending_keys
            and self.manifest.is_current(state.source, document.sha256)
        ):
            with self.manifest.transaction():  # same bytes, new mtime: nothing to embed
                self.manifest.record_document(document, entry.chunk_keys)
            report.touched.append(state.source)
            emit(IndexEvent("unchanged", state.source))
            return None
        return _Pending(document, chunk_document(document, self.chunking), entry)

    def _write(
        self, batch: list[_Pending], report: IndexReport, emit: Callable[[IndexEvent], None]
    ) -> None:
        from llmagentos.memory import NewMemory

        with self.manifest.transaction():  # write-ahead: these keys may soon be stored
            for pending in batch:
                self.manifest.mark_pending(pending.document.source, [c.key for c in pending.chunks])
        items = [
            NewMemory(chunk.text, _metadata(chunk, pending.document), key=chunk.key)
            for pending in batch
            for chunk in pending.chunks
        ]
        if items:
            self.memory.put(self.namespace, items)
        stale: set[str] = set()
        for pending in batch:
            if pending.entry is not None:
                stale |= pending.entry.stored_keys - {c.key for c in pending.chunks}
        deleted = self._delete_keys(stale)
        with self.manifest.transaction():
            for pending in batch:
                self.manifest.record_document(pending.document, [c.key for c in pending.chunks])
        report.chunks_written += len(items)
        report.chunks_deleted += deleted
        for pending in batch:
            known = pending.entry is not None and bool(pending.entry.sha256)
            (report.updated if known else report.added).append(pending.document.source)
            emit(IndexEvent("indexed", pending.document.source, f"{len(pending.chunks)} chunks"))

    def _delete_keys(self, keys: Iterable[str]) -> int:
        """Delete the chunks stored under ``keys``; keys already gone are skipped."""
        ids = []
        for key in sorted(keys):
            try:
                ids.append(self.memory.get_by_key(self.namespace, key).id)
            except MemoryNotFound:
                continue  # never written (a run killed before its put), or deleted already
        if ids:
            self.memory.delete(self.namespace, ids)
        return len(ids)

    # -- the root folder ---------------------------------------------------------------------

    def _ensure_meta(self) -> None:
        self.manifest.connection.execute(
            "CREATE TABLE IF NOT EXISTS search_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )

    def _check_root(self, folder: Path) -> None:
        if not folder.is_dir():
            raise DocumentError(str(folder), "not a folder")
        root = str(folder.resolve())
        row = self.manifest.connection.execute(
            "SELECT value FROM search_meta WHERE name = 'root'"
        ).fetchone()
        if row is None:
            with self.manifest.transaction():
                self.manifest.connection.execute(
                    "INSERT INTO search_meta VALUES ('root', ?)", (root,)
                )
        elif row[0] != root:
            raise ConfigError(
                "root",
                f"index {self.namespace.agent!r} was built from {row[0]}, not {root}:"
                " give it another index name",
            )

    # -- searching ---------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: SearchMode = "hybrid",
        where: dict[str, Any] | None = None,
        rerank: Reranker | None = None,
        candidates: int = 30,
    ) -> list[SearchHit]:
        """The ``k`` best passages for ``query``.

        With ``rerank``, the ``max(k, candidates)`` best of the first search are
        re-scored by the re-ranker and the ``k`` best of those returned.

        Raises:
            MemoryInputError: a bad ``k``, ``mode`` or filter (naming it).
        """
        depth = max(k, candidates) if rerank is not None else k
        result = self.memory.search(self.namespace, query, k=depth, mode=mode, where=where)
        hits = [_hit(hit) for hit in result.hits]
        if rerank is not None:
            hits = rerank.rerank(query, hits)
        return hits[:k]

    def sources(self) -> list[str]:
        """The sources indexed without error."""
        return [s for s, e in self.manifest.entries().items() if e.error is None and e.sha256]


def _metadata(chunk: Chunk, document: Document) -> dict[str, Any]:
    return {**chunk.metadata(), "media_type": document.media_type, "sha256": document.sha256}


def _hit(hit: Any) -> SearchHit:
    meta = hit.item.metadata
    return SearchHit(
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        heading_path=str(meta.get("heading_path", "")),
        text=hit.item.text,
        score=float(hit.score),
        chunk_index=int(meta.get("chunk_index", 0)),
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", 0)),
        lexical_rank=hit.lexical_rank,
        vector_rank=hit.vector_rank,
    )


def hits_by_source(hits: Sequence[SearchHit]) -> dict[str, float]:
    """The best score of each source among ``hits`` (a document's score is its best chunk's)."""
    best: dict[str, float] = {}
    for hit in hits:
        score = hit.rerank_score if hit.rerank_score is not None else hit.score
        best[hit.source] = max(score, best.get(hit.source, float("-inf")))
    return best
