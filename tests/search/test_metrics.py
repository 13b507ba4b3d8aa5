"""The agreement measures against scipy's, and the intervals' behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from llmagentos.search.metrics import (
    Interval,
    bootstrap_pair_pearson,
    pair_correlations,
    pearson,
    query_spearman,
    rankdata,
    spearman,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_and_correlations_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=40).astype(float)  # many ties
    y = x + rng.normal(size=40)
    assert np.allclose(rankdata(x), stats.rankdata(x))
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert math.isnan(pearson(np.ones(5), np.arange(5.0)))


def _human(n: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)), 1)
    return upper + upper.T + np.eye(n)


def test_pair_correlations_use_the_upper_triangle_of_a_symmetrised_matrix() -> None:
    human = _human()
    assert pair_correlations(human, np.triu(human)) == pytest.approx((1.0, 1.0))
    # An asymmetric system is averaged with its transpose: scaling rows apart breaks
    # nothing if each pair's mean still orders as the human's does.
    skewed = np.triu(human, 1) * 2.0
    assert pair_correlations(skewed, human) == pytest.approx((1.0, 1.0))
    assert pair_correlations(-human, human)[0] == pytest.approx(-1.0)
    # The diagonal is not a pair: changing it changes nothing.
    assert pair_correlations(human + np.diag(np.arange(12.0)), human) == pytest.approx((1, 1))


def test_query_spearman_ranks_each_row_without_its_own_document() -> None:
    human = _human()
    system = human.copy()
    np.fill_diagonal(system, -100.0)  # self-similarity must not enter the ranking
    system[3] = -system[3]  # query 3 ranked backwards
    values = query_spearman(system, human)
    assert values[3] == pytest.approx(-1.0)
    assert np.allclose(np.delete(values, 3), 1.0)
    system[5] = 0.0
    assert math.isnan(query_spearman(system, human)[5])  # no ranking at all


def test_bootstrap_draws_are_shared_and_reproducible() -> None:
    human = _human(20)
    rng = np.random.default_rng(1)
    noisy = human + rng.normal(scale=0.3, size=human.shape)
    draws = bootstrap_pair_pearson({"same": human, "noisy": noisy}, human, resamples=200)
    assert np.allclose(draws["same"], 1.0)
    again = bootstrap_pair_pearson({"noisy": noisy}, human, resamples=200)
    assert np.array_equal(draws["noisy"], again["noisy"])
    interval = Interval.percentile(pair_correlations(noisy, human)[0], draws["noisy"])
    assert interval.low < interval.mean < interval.high < 1.0


def test_student_t_interval() -> None:
    interval = Interval.student_t([1.0, 2.0, 3.0, float("nan")])
    assert (interval.mean, interval.n) == (2.0, 3)
    assert interval.half == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
    single = Interval.student_t([0.5])
    assert single.mean == 0.5 and math.isnan(single.half)
    assert single.text() == "0.500"
