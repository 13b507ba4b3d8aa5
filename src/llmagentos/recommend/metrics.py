"""Top-k lists over the full catalogue and HR@k, NDCG@k, Recall@k per user.

Every item is a candidate except those the user has already rated (the ``seen``
mask): no sampled negatives. For one user with target set T and top-k list L:

* HR@k = 1 if L and T share an item, else 0;
* Recall@k = |L ∩ T| / |T| (divided by |T|, not min(k, |T|): a user with 30 targets
  scores at most 1/3 with 10 slots);
* NDCG@k = DCG / IDCG with DCG = Σ_{r=1..k} [L_r ∈ T] / log2(r + 1) and IDCG the DCG of
  min(k, |T|) hits at the top (binary relevance).

Each function returns the per-user values; the report averages them over users.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from llmagentos.exceptions import ConfigError

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["METRICS", "mean_metrics", "ranking_metrics", "top_k"]

METRICS = ("HR@10", "NDCG@10", "Recall@10")


def top_k(scores: np.ndarray, exclude: sp.csr_matrix | None = None, k: int = 10) -> np.ndarray:
    """The ``k`` best items per row of ``scores`` (best first), never an excluded one.

    Ties are broken by the lower item index, so the lists are reproducible. A row with
    fewer than ``k`` candidates is padded with ``-1``; excluded items score ``-inf``.

    Args:
        scores: users x items.
        exclude: users x items, nonzero where an item must not be listed (seen items).
    """
    if scores.ndim != 2:
        raise ConfigError("scores", f"must be users x items (got shape {scores.shape})")
    if k < 1:
        raise ConfigError("k", f"must be at least 1 (got {k})")
    masked = np.array(scores, dtype=np.float64, copy=True)
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ConfigError("exclude", f"shape {exclude.shape} != scores {scores.shape}")
        coo = exclude.tocoo()
        masked[coo.row, coo.col] = -np.inf
    out = np.full((masked.shape[0], k), -1, dtype=np.int64)
    for row in range(masked.shape[0]):
        # A stable sort of -score: ties go to the lower item index.
        best = np.argsort(-masked[row], kind="stable")[:k]
        best = best[np.isfinite(masked[row, best])]
        out[row, : len(best)] = best
    return out


def ranking_metrics(
    lists: np.ndarray, targets: sp.csr_matrix, k: int = 10
) -> Mapping[str, np.ndarray]:
    """HR@k, NDCG@k and Recall@k of each user's list against their targets.

    Args:
        lists: users x (at least ``k``) item indices, best first (``-1``: no item).
        targets: users x items, nonzero at each user's target items.

    Returns:
        ``{"HR@k": ..., "NDCG@k": ..., "Recall@k": ...}``, one value per user. Users
        with no target get NaN (the report refuses them rather than average zeros).
    """
    if lists.ndim != 2 or lists.shape[1] < k:
        raise ConfigError("lists", f"need users x >= {k} items (got shape {lists.shape})")
    if lists.shape[0] != targets.shape[0]:
        raise ConfigError("targets", f"{targets.shape[0]} users, but {lists.shape[0]} lists")
    top = lists[:, :k]
    hits = np.zeros(top.shape, dtype=bool)
    counts = np.diff(targets.indptr)
    for row in range(top.shape[0]):
        wanted = targets.indices[targets.indptr[row] : targets.indptr[row + 1]]
        hits[row] = np.isin(top[row], wanted) & (top[row] >= 0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal = np.cumsum(discounts)[np.clip(np.minimum(counts, k) - 1, 0, k - 1)]
    n_hits = hits.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        empty = counts == 0
        hr = np.where(empty, np.nan, (n_hits > 0).astype(np.float64))
        ndcg = np.where(empty, np.nan, dcg / ideal)
        recall = np.where(empty, np.nan, n_hits / np.maximum(counts, 1))
    return {f"HR@{k}": hr, f"NDCG@{k}": ndcg, f"Recall@{k}": recall}


def mean_metrics(per_user: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The mean of each metric over users (NaN rows, users without targets, refused)."""
    out: dict[str, float] = {}
    for name, values in per_user.items():
        if np.isnan(values).any():
            raise ConfigError("targets", f"{name}: some users have no targets")
        out[name] = float(values.mean())
    return out
