"""One namespace's vectors: an exact scan while it is small, an HNSW index above that.

Below ``ann_threshold`` vectors a matrix product over every row is both exact and
faster than a graph walk (at 384 dimensions on this class of CPU, ~1 ms per 10k rows).
Above it, an HNSW graph (usearch) answers in about a millisecond at any size, and the
exact matrix stays beside it: filtered searches over few candidates scan exactly, and
:meth:`VectorIndex.recall` measures the graph against the exact answer.

Rows are keyed by the store's integer row ids. Not thread-safe by itself: the store
serialises writers and readers of one index with the index's lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from llmagentos.embeddings import Vectors
from llmagentos.exceptions import MissingExtraError

__all__ = ["DEFAULT_ANN_THRESHOLD", "VectorIndex"]

DEFAULT_ANN_THRESHOLD = 20_000
_EXACT_CANDIDATES = 4096  # a filtered search over at most this many rows scans exactly
_EXPANSION_SEARCH = 128  # the HNSW search depth (see _build_ann)


class VectorIndex:
    """Vectors by row id, searched by inner product (cosine, for unit vectors)."""

    def __init__(self, dimension: int, *, ann_threshold: int = DEFAULT_ANN_THRESHOLD) -> None:
        self.dimension = dimension
        self.ann_threshold = ann_threshold
        self.lock = threading.RLock()
        self._matrix = np.zeros((0, dimension), dtype=np.float32)
        self._size = 0
        self._rowids = np.zeros(0, dtype=np.int64)
        self._position: dict[int, int] = {}
        self._ann: Any = None
        self.version = -1  # the store's namespace version this index reflects

    def __len__(self) -> int:
        return self._size

    @property
    def kind(self) -> str:
        return "hnsw" if self._ann is not None else "exact"

    def _grow(self, extra: int) -> None:
        need = self._size + extra
        if need <= len(self._matrix):
            return
        capacity = max(need, 2 * len(self._matrix), 256)
        matrix = np.zeros((capacity, self.dimension), dtype=np.float32)
        matrix[: self._size] = self._matrix[: self._size]
        rowids = np.zeros(capacity, dtype=np.int64)
        rowids[: self._size] = self._rowids[: self._size]
        self._matrix, self._rowids = matrix, rowids

    def add(self, rowids: Sequence[int], vectors: Vectors) -> None:
        """Add or replace the vectors of ``rowids``."""
        replace = [i for i, r in enumerate(rowids) if r in self._position]
        if replace:
            self.remove([rowids[i] for i in replace])
        self._grow(len(rowids))
        start = self._size
        end = start + len(rowids)
        self._matrix[start:end] = vectors
        self._rowids[start:end] = rowids
        for offset, rowid in enumerate(rowids):
            self._position[int(rowid)] = start + offset
        self._size = end
        if self._ann is not None:
            self._ann.add(np.asarray(rowids, dtype=np.uint64), np.ascontiguousarray(vectors))
        elif self._size >= self.ann_threshold:
            self._build_ann()

    def remove(self, rowids: Collection[int]) -> None:
        """Drop the vectors of ``rowids`` (unknown ids are ignored)."""
        gone = [int(r) for r in rowids if int(r) in self._position]
        for rowid in gone:
            where = self._position.pop(rowid)
            last = self._size - 1
            if where != last:  # move the last row into the hole
                moved = int(self._rowids[last])
                self._matrix[where] = self._matrix[last]
                self._rowids[where] = moved
                self._position[moved] = where
            self._size = last
        if self._ann is not None and gone:
            self._ann.remove(np.asarray(gone, dtype=np.uint64))

    def replace_with(self, other: VectorIndex) -> None:
        """Take ``other``'s contents (a reload), keeping this index's lock and identity."""
        self._matrix, self._size, self._rowids = other._matrix, other._size, other._rowids
        self._position, self._ann = other._position, other._ann

    def bulk_load(
        self, rowids: Sequence[int], vectors: Vectors, *, graph: Path | None = None
    ) -> None:
        """Fill an empty index. ``graph``: a saved HNSW file of these same rows
        (:meth:`save_graph`), used instead of building one when it fits."""
        if self._size:
            raise ValueError("bulk_load fills an empty index")
        count = len(rowids)
        self._grow(count)
        self._matrix[:count] = vectors
        self._rowids[:count] = rowids
        self._position = {int(r): i for i, r in enumerate(rowids)}
        self._size = count
        if count < self.ann_threshold:
            return
        if graph is not None and graph.exists():
            from usearch.index import Index

            with contextlib.suppress(Exception):  # a stale or broken file: build instead
                ann = Index.restore(str(graph))
                if ann is not None and ann.size == count and ann.ndim == self.dimension:
                    # A saved file keeps the graph, not the search depth: set it again.
                    ann.expansion_search = _EXPANSION_SEARCH  # type: ignore[misc]
                    self._ann = ann
                    return
        self._build_ann()

    def save_graph(self, path: Path) -> bool:
        """Write the HNSW graph to ``path`` (nothing while the index is exact)."""
        if self._ann is None:
            return False
        self._ann.save(str(path))
        return True

    def _build_ann(self) -> None:
        try:
            from usearch.index import Index
        except ImportError as err:
            raise MissingExtraError("the ANN vector index", "memory", "usearch") from err
        ann = Index(
            ndim=self.dimension,
            metric="ip",
            dtype="f32",
            # 100k real-text vectors (bench/_memcorpus.py, copies mixed between passages):
            # recall@10 vs the exact scan was 0.93 at connectivity 16 / expansion_add 128 /
            # search 256; with 32 / 200 it is 0.97 at search 128 (p50 1.5 ms), 0.99 at 256.
            connectivity=32,
            expansion_add=200,
            expansion_search=_EXPANSION_SEARCH,
        )
        if self._size:
            ann.add(
                self._rowids[: self._size].astype(np.uint64),
                np.ascontiguousarray(self._matrix[: self._size]),
                threads=0,
            )
        self._ann = ann

    def _exact(
        self, query: Vectors, k: int, positions: npt.NDArray[np.int64] | None
    ) -> list[tuple[int, float]]:
        if positions is None:
            scores = self._matrix[: self._size] @ query
            ids = self._rowids[: self._size]
        else:
            scores = self._matrix[positions] @ query
            ids = self._rowids[positions]
        if len(scores) == 0:
            return []
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def search(
        self, query: Vectors, k: int, *, allowed: Collection[int] | None = None, exact: bool = False
    ) -> list[tuple[int, float]]:
        """The ``k`` nearest rows as ``(rowid, score)``, best first.

        ``allowed`` restricts the answer to those row ids (a metadata filter's rows).
        ``exact`` forces the full scan (the reference for recall).
        """
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if allowed is not None:
            positions = np.fromiter(
                (self._position[r] for r in allowed if r in self._position), dtype=np.int64
            )
            if self._ann is None or exact or len(positions) <= _EXACT_CANDIDATES:
                return self._exact(query, k, positions)
            return self._ann_filtered(query, k, set(allowed))
        if self._ann is None or exact:
            return self._exact(query, k, None)
        found = self._ann.search(query, min(k, self._size))
        return [
            (int(key), 1.0 - float(d)) for key, d in zip(found.keys, found.distances, strict=True)
        ]

    def _ann_filtered(self, query: Vectors, k: int, allowed: set[int]) -> list[tuple[int, float]]:
        # Over-fetch from the graph and filter; if the filter keeps too few, scan exactly.
        fetch = min(self._size, max(4 * k, 64))
        while True:
            found = self._ann.search(query, fetch)
            hits = [
                (int(key), 1.0 - float(d))
                for key, d in zip(found.keys, found.distances, strict=True)
                if int(key) in allowed
            ]
            if len(hits) >= k or fetch >= self._size:
                return hits[:k]
            if fetch >= 8 * max(4 * k, 64):
                positions = np.fromiter(
                    (self._position[r] for r in allowed if r in self._position), np.int64
                )
                return self._exact(query, k, positions)
            fetch = min(self._size, fetch * 2)

    def recall(self, queries: Vectors, k: int = 10) -> float:
        """Recall@k of the index against the exact scan over ``queries`` (1.0 when exact)."""
        if self._ann is None or not len(queries):
            return 1.0
        total = 0.0
        for query in queries:
            truth = {r for r, _ in self._exact(query, k, None)}
            got = {r for r, _ in self.search(query, k)}
            total += len(truth & got) / max(1, len(truth))
        return total / len(queries)

    def stats(self) -> dict[str, Any]:
        return {"vectors": self._size, "index": self.kind, "dimension": self.dimension}
