"""Agreement of a similarity matrix with human judgments, and its uncertainty.

* :func:`pair_correlations` — Pearson and Spearman over the upper triangle (every
  unordered pair of distinct documents once), as Lee et al. (2005) and gensim do; an
  asymmetric matrix (BM25's) is averaged with its transpose first.
* :func:`query_spearman` — for each document as the query, the Spearman correlation of
  the system's row with the human row over the other documents: how well the system
  ranks, which is what a search engine is for.
* :func:`bootstrap_pair_pearson` — the upper-triangle Pearson over resampled document
  sets (pairs of a document with its own copy left out), for intervals and paired
  differences between systems.

NumPy only; Student-t quantiles come from scipy (the ``[search]`` extra has it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from llmagentos.exceptions import MissingExtraError

__all__ = [
    "Interval",
    "bootstrap_pair_pearson",
    "pair_correlations",
    "pearson",
    "query_spearman",
    "rankdata",
    "spearman",
    "symmetrised",
]

Matrix = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean and its 95% interval ``[low, high]`` over ``n`` values (``nan`` when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def student_t(cls, values: NDArray[np.float64] | list[float]) -> Interval:
        """Mean ± t(0.975, n - 1) · s / sqrt(n), over the finite values."""
        data = np.asarray(values, dtype=np.float64)
        data = data[np.isfinite(data)]
        n = int(data.size)
        if n == 0:
            return cls(math.nan, math.nan, math.nan, 0)
        mean = float(data.mean())
        if n < 2:
            return cls(mean, math.nan, math.nan, n)
        half = _t975(n - 1) * float(data.std(ddof=1)) / math.sqrt(n)
        return cls(mean, mean - half, mean + half, n)

    @classmethod
    def percentile(cls, point: float, samples: NDArray[np.float64]) -> Interval:
        """``point`` with the 2.5th and 97.5th percentiles of bootstrap ``samples``."""
        low, high = np.percentile(samples, [2.5, 97.5])
        return cls(point, float(low), float(high), int(samples.size))

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.low):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci95_low": self.low, "ci95_high": self.high, "n": self.n}


def _t975(df: int) -> float:
    try:
        from scipy.stats import t
    except ImportError as err:
        raise MissingExtraError("confidence intervals", "search", "scipy") from err
    return float(t.ppf(0.975, df))


def rankdata(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Ranks from 1, ties given the mean of the ranks they span (scipy's ``average``)."""
    data = np.asarray(values, dtype=np.float64)
    order = np.argsort(data, kind="mergesort")
    ordered = data[order]
    # Start of each run of equal values, and each run's mean rank.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], data.size]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(data.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def pearson(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """Pearson's r; ``nan`` when either side is constant."""
    a = np.asarray(x, dtype=np.float64) - np.mean(x)
    b = np.asarray(y, dtype=np.float64) - np.mean(y)
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denominator if denominator > 0 else math.nan


def spearman(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """Spearman's rho: Pearson's r of the ranks (ties averaged)."""
    return pearson(rankdata(x), rankdata(y))


def symmetrised(matrix: Matrix) -> Matrix:
    """``(M + Mᵀ) / 2``: one score per unordered pair of an asymmetric matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    return (m + m.T) / 2.0


def pair_correlations(system: Matrix, human: Matrix) -> tuple[float, float]:
    """(Pearson, Spearman) of the two matrices' upper triangles (diagonal excluded)."""
    upper = np.triu_indices(human.shape[0], 1)
    s, h = symmetrised(system)[upper], symmetrised(human)[upper]
    return pearson(s, h), spearman(s, h)


def query_spearman(system: Matrix, human: Matrix) -> NDArray[np.float64]:
    """Per query document i: Spearman of row i against the human row i, i itself left out.

    A row the system scores constant has no ranking: its value is ``nan``.
    """
    n = human.shape[0]
    people = symmetrised(human)
    values = np.empty(n, dtype=np.float64)
    for i in range(n):
        others = np.arange(n) != i
        values[i] = spearman(system[i, others], people[i, others])
    return values


def bootstrap_pair_pearson(
    systems: Mapping[str, Matrix], human: Matrix, *, resamples: int = 1000, seed: int = 0
) -> dict[str, NDArray[np.float64]]:
    """Upper-triangle Pearson of each system on the same ``resamples`` document resamples.

    Each resample draws n documents with replacement and takes every pair of two
    different draws that are not the same document; the systems share the draws, so
    the differences between them are paired.
    """
    n = human.shape[0]
    people = symmetrised(human)
    matrices = {name: symmetrised(m) for name, m in systems.items()}
    rng = np.random.default_rng(seed)
    first, second = np.triu_indices(n, 1)
    out = {name: np.empty(resamples, dtype=np.float64) for name in systems}
    for r in range(resamples):
        draw = np.asarray(rng.integers(0, n, size=n), dtype=np.int64)
        rows, cols = draw[first], draw[second]
        keep = rows != cols
        rows, cols = rows[keep], cols[keep]
        h = people[rows, cols]
        for name, matrix in matrices.items():
            out[name][r] = pearson(matrix[rows, cols], h)
    return out
