"""TopPop, ItemKNN and EASE on matrices small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from llmagentos.exceptions import ConfigError
from llmagentos.recommend.baselines import EASE, ItemKNN, TopPop

# 4 users x 4 items; item 3 is liked by no one.
X = sp.csr_matrix(
    np.array(
        [
            [1, 1, 0, 0],
            [1, 0, 1, 0],
            [1, 1, 1, 0],
            [0, 1, 0, 0],
        ],
        dtype=np.float64,
    )
)


def rows(*histories: list[int]) -> sp.csr_matrix:
    r = [i for i, h in enumerate(histories) for _ in h]
    c = [j for h in histories for j in h]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(histories), 4))


def test_toppop_counts_likes() -> None:
    model = TopPop().fit(X)
    assert model.popularity.tolist() == [3, 3, 2, 0]
    assert model.score(rows([0], [])).tolist() == [[3, 3, 2, 0]] * 2


def test_itemknn_cosine_by_hand() -> None:
    # Item columns: 0 = users {0,1,2}, 1 = {0,2,3}, 2 = {1,2}.
    # cos(0,1) = 2/sqrt(3*3) = 2/3; cos(0,2) = 2/sqrt(3*2); cos(1,2) = 1/sqrt(3*2).
    model = ItemKNN(k=10).fit(X)
    expected = np.array(
        [
            [0, 2 / 3, 2 / math.sqrt(6)],
            [2 / 3, 0, 1 / math.sqrt(6)],
            [2 / math.sqrt(6), 1 / math.sqrt(6), 0],
        ]
    )
    assert model.active.tolist() == [0, 1, 2]
    assert model.similarity == pytest.approx(expected)
    # A user who liked item 0: score_j = S_0j; item 3 (no likes) scores 0.
    assert model.score(rows([0]))[0] == pytest.approx([0, 2 / 3, 2 / math.sqrt(6), 0])
    assert model.score_items([0, 2]) == pytest.approx(model.score(rows([0, 2]))[0])


def test_itemknn_keeps_k_neighbours_per_candidate() -> None:
    model = ItemKNN(k=1).fit(X)
    # Each column keeps only its most similar item: 0 <- 2 (0.816), 1 <- 0, 2 <- 0.
    assert model.similarity == pytest.approx(
        np.array([[0, 2 / 3, 2 / math.sqrt(6)], [0, 0, 0], [2 / math.sqrt(6), 0, 0]])
    )


def test_ease_two_items_by_hand() -> None:
    # With two items, column j of B solves min ||x_j - x_i b||^2 + lam b^2:
    # b = (x_i . x_j) / (x_i . x_i + lam).
    two = sp.csr_matrix(np.array([[1, 1], [1, 0], [1, 1], [0, 1]], dtype=np.float64))
    lam = 2.0
    model = EASE(lam).fit(two)
    assert model.weights == pytest.approx(np.array([[0, 2 / (3 + lam)], [2 / (3 + lam), 0]]))


def test_ease_matches_the_per_column_ridge_solution() -> None:
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 6)) < 0.4).astype(np.float64)
    dense[:, 5] = 0  # an item no one liked
    lam = 3.0
    model = EASE(lam).fit(sp.csr_matrix(dense))
    full = np.zeros((6, 6))
    full[np.ix_(model.active, model.active)] = model.weights
    for j in range(5):  # independent check: ridge regression of x_j on the other items
        others = [i for i in range(5) if i != j]
        a = dense[:, others]
        b = np.linalg.solve(a.T @ a + lam * np.eye(4), a.T @ dense[:, j])
        assert full[others, j] == pytest.approx(b)
        assert full[j, j] == 0
    history = sp.csr_matrix(dense[:3])
    assert model.score(history) == pytest.approx(dense[:3] @ full)
    assert model.score_items([0, 2]) == pytest.approx(full[0] + full[2])


def test_unfitted_and_bad_parameters_fail_by_name() -> None:
    with pytest.raises(ConfigError, match="fitted"):
        EASE().score(rows([0]))
    with pytest.raises(ConfigError, match="lam"):
        EASE(0.0)
    with pytest.raises(ConfigError, match="k"):
        ItemKNN(0)
    with pytest.raises(ConfigError, match="history"):
        TopPop().fit(X).score(sp.csr_matrix((1, 5)))
