"""HR@10, NDCG@10 and Recall@10 on cases worked out by hand; top-k ties and exclusions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from llmagentos.exceptions import ConfigError
from llmagentos.recommend.metrics import mean_metrics, ranking_metrics, top_k


def targets(rows: list[list[int]], n_items: int = 20) -> sp.csr_matrix:
    r = [i for i, row in enumerate(rows) for _ in row]
    c = [j for row in rows for j in row]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def test_hand_computed_user() -> None:
    # Targets {3, 7, 11}; the list hits 3 at rank 1 and 7 at rank 4.
    lists = np.array([[3, 0, 1, 7, 2, 4, 5, 6, 8, 9]])
    m = ranking_metrics(lists, targets([[3, 7, 11]]))
    dcg = 1 / math.log2(2) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["HR@10"][0] == 1.0
    assert m["Recall@10"][0] == pytest.approx(2 / 3)
    assert m["NDCG@10"][0] == pytest.approx(dcg / idcg)


def test_miss_perfect_and_many_targets() -> None:
    lists = np.array([list(range(10)), list(range(10)), list(range(10))])
    m = ranking_metrics(lists, targets([[15], [0, 1], list(range(20))]))
    assert m["HR@10"].tolist() == [0.0, 1.0, 1.0]
    assert m["NDCG@10"].tolist() == pytest.approx([0.0, 1.0, 1.0])  # IDCG uses min(k, |T|)
    # Recall divides by |T|: ten hits out of twenty targets is 0.5, not 1.
    assert m["Recall@10"].tolist() == pytest.approx([0.0, 1.0, 0.5])


def test_hit_below_rank_ten_does_not_count() -> None:
    lists = np.array([[*range(10), 12]])
    m = ranking_metrics(lists, targets([[12]]))
    assert m["HR@10"][0] == 0.0 and m["NDCG@10"][0] == 0.0


def test_padding_never_hits_and_users_without_targets_are_refused() -> None:
    lists = np.array([[5, -1, -1, -1, -1, -1, -1, -1, -1, -1], list(range(10))])
    m = ranking_metrics(lists, targets([[5], []]))
    assert m["HR@10"][0] == 1.0 and math.isnan(m["HR@10"][1])
    with pytest.raises(ConfigError, match="no targets"):
        mean_metrics(m)
    assert mean_metrics(ranking_metrics(lists[:1], targets([[5]]))) == {
        "HR@10": 1.0,
        "NDCG@10": 1.0,
        "Recall@10": 1.0,
    }


def test_top_k_excludes_seen_items_and_breaks_ties_by_index() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.9, 0.1, 0.5]])
    seen = sp.csr_matrix(([1.0], ([0], [3])), shape=(1, 6))
    assert top_k(scores, seen, k=4).tolist() == [[1, 0, 2, 5]]
    assert top_k(scores, None, k=3).tolist() == [[1, 3, 0]]
    # Fewer candidates than k: padded with -1.
    all_seen = sp.csr_matrix(np.ones((1, 6)) - np.eye(6)[[2]])
    assert top_k(scores, all_seen, k=3).tolist() == [[2, -1, -1]]


def test_bad_shapes_name_the_argument() -> None:
    with pytest.raises(ConfigError, match="lists"):
        ranking_metrics(np.zeros((1, 5), dtype=np.int64), targets([[1]]))
    with pytest.raises(ConfigError, match="exclude"):
        top_k(np.zeros((2, 3)), sp.csr_matrix((1, 3)))
