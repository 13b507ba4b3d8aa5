"""A model-free embedder: signed feature hashing of words and word pairs.

Not a semantic model: two texts are close when they share words. It costs microseconds,
needs no extra, and gives the same vectors on every machine, which makes it the
embedder for storage tests and the lexical control in evaluations (``hash:<dimension>``).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence

import numpy as np

from llmagentos.embeddings.base import Embedder, Embeddings, normalise
from llmagentos.exceptions import MemoryInputError

__all__ = ["HashingEmbedder", "words"]

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (Unicode letters, digits and underscore)."""
    return _WORD.findall(text.lower())


class HashingEmbedder(Embedder):
    """``dimension`` buckets (default 256); each word and adjacent pair adds ±1 to one."""

    max_batch = 1024

    def __init__(self, dimension: int = 256) -> None:
        if (
            isinstance(dimension, bool)
            or not isinstance(dimension, int)
            or not 8 <= dimension <= 8192
        ):
            raise MemoryInputError(
                "dimension", f"must be an integer from 8 to 8192 (got {dimension!r})"
            )
        self.dimension = dimension
        self.model_id = f"hash:{dimension}"

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dimension, 1.0 if (value >> 63) & 1 else -1.0

    def embed(self, texts: Sequence[str]) -> Embeddings:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        tokens = 0
        for row, text in enumerate(texts):
            tokens_here = words(text)
            tokens += len(tokens_here)
            features = tokens_here + [f"{a} {b}" for a, b in itertools.pairwise(tokens_here)]
            for feature in features:
                column, sign = self._bucket(feature)
                out[row, column] += sign
        return Embeddings(normalise(out), tokens)
