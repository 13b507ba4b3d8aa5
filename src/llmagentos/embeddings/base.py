"""The embedder contract: texts in, unit-length float32 vectors out.

An :class:`Embedder` implements :meth:`Embedder.embed` (blocking; providers that talk
to a server may override :meth:`Embedder.aembed` instead). Vectors are L2-normalised,
so a dot product is the cosine similarity, which every index here relies on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llmagentos._blocking import run_blocking

__all__ = ["Embedder", "Embeddings", "Vectors", "normalise"]

Vectors = npt.NDArray[np.float32]


@dataclass(slots=True)
class Embeddings:
    """One call's vectors (``(n, dimension)`` float32, unit length) and the tokens it read."""

    vectors: Vectors
    tokens: int


def normalise(vectors: npt.ArrayLike) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vectors = (array / norms).astype(np.float32, copy=False)
    return out


class Embedder(ABC):
    """Turns texts into vectors.

    Attributes:
        model_id: what made the vectors; an index accepts vectors of one model only.
        dimension: the vectors' length.
        max_batch: the most texts one :meth:`embed` call should carry.
    """

    model_id: str
    dimension: int
    max_batch: int = 64

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed ``texts`` (blocking)."""

    async def aembed(self, texts: Sequence[str]) -> Embeddings:
        """Embed ``texts`` without blocking the event loop."""
        return await run_blocking(self.embed, texts)

    def close(self) -> None:  # noqa: B027 - most embedders hold nothing to release
        """Release what the embedder holds (sessions, connections)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r}, dimension={self.dimension})"
