"""The offline recommenders the agent is measured against: TopPop, ItemKNN and EASE.

Each is fitted once on the training positives ``X`` (users x items, binary) and scores
a user from their history ``h`` (a row of positives, read at prediction time: fold-in,
no refitting), so users who first appear after the cut are scored like any other.

* :class:`TopPop`: ``score_j`` = the number of training users who liked ``j``.
* :class:`ItemKNN`: cosine similarity of item columns,
  ``S_ij = (X^T X)_ij / sqrt(n_i n_j)`` with ``S_jj = 0``; each candidate ``j`` keeps
  its ``k`` most similar items (column-wise top-k) and ``score_j = Σ_{i ∈ h} S_ij``
  (Sarwar et al., 2001; Deshpande and Karypis, 2004).
* :class:`EASE`: the closed form of Steck (2019),
  ``P = (X^T X + λI)^{-1}``, ``B_ij = -P_ij / P_jj``, ``B_jj = 0``, ``score = h B``.

Items no training user liked have an all-zero column and score 0 under every model;
ItemKNN and EASE are computed on the other items only (a smaller matrix to invert)
and scattered back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from llmagentos.exceptions import ConfigError

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["EASE", "ItemKNN", "Recommender", "TopPop"]


@runtime_checkable
class Recommender(Protocol):
    """Fitted on training positives, scores users from their histories.

    ``score`` takes users x items; ``score_items`` is one user whose history is
    ``items`` (the same numbers, without building a sparse row).
    """

    name: str

    def fit(self, train: sp.csr_matrix) -> Recommender: ...

    def score(self, history: sp.csr_matrix) -> np.ndarray: ...

    def score_items(self, items: Sequence[int]) -> np.ndarray: ...


def _checked_fit(train: Any) -> Any:
    if train.ndim != 2 or train.shape[1] == 0:
        raise ConfigError("train", f"must be users x items with items (got {train.shape})")
    binary = train.tocsr(copy=True).astype(np.float64)
    binary.data[:] = 1.0
    return binary


def _active(train: Any) -> np.ndarray:
    """Items at least one training user liked."""
    return np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() > 0)


class _Fitted:
    n_items: int = -1
    active = np.zeros(0, dtype=np.int64)

    def _rows(self, items: Sequence[int], weights: np.ndarray) -> np.ndarray:
        """``h W`` for the one history ``items``, through the active-item index."""
        out = np.zeros(self.n_items)
        chosen = np.unique(np.asarray(items, dtype=np.int64))
        if chosen.size == 0 or self.active.size == 0:
            return out
        position = np.minimum(np.searchsorted(self.active, chosen), self.active.size - 1)
        # Items no training user liked have all-zero rows: they add nothing.
        known = position[self.active[position] == chosen]
        out[self.active] = weights[known].sum(axis=0)
        return out

    def _need(self, history: Any) -> None:
        if self.n_items < 0:
            raise ConfigError("model", f"{type(self).__name__} must be fitted before scoring")
        if history.shape[1] != self.n_items:
            raise ConfigError("history", f"has {history.shape[1]} items, the model {self.n_items}")


class TopPop(_Fitted):
    """The most liked items for everyone (the history only excludes, via ``seen``)."""

    name = "TopPop"

    def __init__(self) -> None:
        self.popularity = np.zeros(0)

    def fit(self, train: sp.csr_matrix) -> TopPop:
        binary = _checked_fit(train)
        self.n_items = binary.shape[1]
        self.popularity = np.asarray(binary.sum(axis=0)).ravel()
        return self

    def score(self, history: sp.csr_matrix) -> np.ndarray:
        self._need(history)
        return np.tile(self.popularity, (history.shape[0], 1))

    def score_items(self, items: Sequence[int]) -> np.ndarray:
        return np.array(self.popularity, dtype=np.float64)


class ItemKNN(_Fitted):
    """Item-item cosine similarity with ``k`` neighbours per candidate item.

    Args:
        k: neighbours kept per item (the rest of its column is set to 0).
    """

    name = "ItemKNN"

    def __init__(self, k: int = 100) -> None:
        if k < 1:
            raise ConfigError("k", f"must be at least 1 (got {k})")
        self.k = k
        self.active = np.zeros(0, dtype=np.int64)
        self.similarity = np.zeros((0, 0))

    def fit(self, train: sp.csr_matrix) -> ItemKNN:
        binary = _checked_fit(train)
        self.n_items = binary.shape[1]
        self.active = _active(binary)
        x = binary[:, self.active]
        gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
        norms = np.sqrt(np.diag(gram))
        sim = gram / np.outer(norms, norms)
        np.fill_diagonal(sim, 0.0)
        n = sim.shape[0]
        if self.k < n:
            # Keep the k largest of each column (candidate j's neighbours i); ties: any.
            drop = np.argpartition(-sim, self.k, axis=0)[self.k :, :]
            np.put_along_axis(sim, drop, 0.0, axis=0)
        self.similarity = sim
        return self

    def score(self, history: sp.csr_matrix) -> np.ndarray:
        self._need(history)
        out = np.zeros((history.shape[0], self.n_items))
        h = history.tocsr()[:, self.active]
        out[:, self.active] = np.asarray(h @ self.similarity)
        return out

    def score_items(self, items: Sequence[int]) -> np.ndarray:
        return self._rows(items, self.similarity)


class EASE(_Fitted):
    """Embarrassingly shallow autoencoder, closed form with L2 weight ``lam``.

    Args:
        lam: the L2 regularization λ added to the Gram matrix's diagonal.
    """

    name = "EASE"

    def __init__(self, lam: float = 500.0) -> None:
        if not lam > 0:
            raise ConfigError("lam", f"must be > 0 (got {lam})")
        self.lam = float(lam)
        self.active = np.zeros(0, dtype=np.int64)
        self.weights = np.zeros((0, 0))

    def fit(self, train: sp.csr_matrix) -> EASE:
        binary = _checked_fit(train)
        self.n_items = binary.shape[1]
        self.active = _active(binary)
        x = binary[:, self.active]
        gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
        gram[np.diag_indices_from(gram)] += self.lam
        precision = np.linalg.inv(gram)
        weights = precision / (-np.diag(precision))  # column j divided by -P_jj
        np.fill_diagonal(weights, 0.0)
        self.weights = weights
        return self

    def score(self, history: sp.csr_matrix) -> np.ndarray:
        self._need(history)
        out = np.zeros((history.shape[0], self.n_items))
        h = history.tocsr()[:, self.active]
        out[:, self.active] = np.asarray(h @ self.weights)
        return out

    def score_items(self, items: Sequence[int]) -> np.ndarray:
        return self._rows(items, self.weights)
