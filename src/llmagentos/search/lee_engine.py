"""The search engine as a Lee-corpus :class:`~llmagentos.search.lee.Scorer`.

The 50 documents are written to a temporary folder and indexed by a fresh
:class:`~llmagentos.search.engine.SearchEngine` on a fresh SQLite memory store; then each
document, its whole text as the query, is searched for every chunk, and document j's
similarity to query i is the best score of j's chunks (0 for a document not returned:
below every score a search returns, which is positive). The chunk target (400 words)
keeps each Lee document (50-150 words) one chunk, so the engine is compared with the
baselines on whole documents.

Scores are the engine's own: BM25 for ``lexical``, cosine for ``vector``, the reciprocal
rank fusion sum for ``hybrid``. Nothing is fit on the background documents: the
engine knows only what it indexed (and, for vectors, what its embedding model learnt).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from llmagentos.search.chunking import ChunkSettings
from llmagentos.search.engine import SearchEngine, hits_by_source

__all__ = ["EngineScorer"]


@dataclass(frozen=True)
class EngineScorer:
    """Query by document through the engine (``mode``: lexical, vector or hybrid)."""

    mode: str = "hybrid"
    embedder: str | None = "local:minilm"
    chunking: ChunkSettings = field(default_factory=lambda: ChunkSettings(400, 0))
    stochastic = False

    @property
    def name(self) -> str:
        if self.mode == "lexical" or self.embedder is None:
            return "engine lexical (FTS5 BM25)"
        return f"engine {self.mode} ({self.embedder})"

    def similarity_matrix(self, documents: Sequence[str], *, seed: int = 0) -> NDArray[np.float64]:
        from llmagentos.memory import MemoryManager

        n = len(documents)
        names = [f"doc{i:03}.txt" for i in range(n)]
        matrix = np.zeros((n, n), dtype=np.float64)
        with tempfile.TemporaryDirectory(prefix="llmagentos-lee-") as tmp:
            folder = Path(tmp, "docs")
            folder.mkdir()
            for name, text in zip(names, documents, strict=True):
                (folder / name).write_text(text, encoding="utf-8")
            embedder = None if self.mode == "lexical" else self.embedder
            memory = MemoryManager(Path(tmp, "memory.db"), embedder=embedder)
            try:
                with SearchEngine(
                    memory, Path(tmp, "manifest.sqlite"), index="lee", chunking=self.chunking
                ) as engine:
                    report = engine.index(folder)
                    depth = max(report.chunks_written, 1)
                    column = {name: j for j, name in enumerate(names)}
                    for i, text in enumerate(documents):
                        hits = engine.search(text, k=depth, mode=self.mode)  # type: ignore[arg-type]
                        for source, score in hits_by_source(hits).items():
                            matrix[i, column[source]] = score
            finally:
                memory.close()
        return matrix
