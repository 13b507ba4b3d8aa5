"""The unbiased pass@k estimator (Chen et al., 2021)."""

from __future__ import annotations

import itertools

import pytest

from llmagentos.codegen.evaluate import pass_at_k


def brute_force(n: int, c: int, k: int) -> float:
    """The chance that a random k-subset of n samples (c of them good) holds a good one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 1, 1), (5, 2, 3), (10, 3, 5), (6, 0, 2), (4, 4, 2)])
def test_matches_enumeration(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k))


def test_known_values() -> None:
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)  # pass@1 is the pass fraction
    assert pass_at_k(5, 0, 5) == 0.0
    assert pass_at_k(5, 1, 5) == 1.0
    assert pass_at_k(10, 2, 9) == 1.0  # fewer failures than k: a pass is certain
    # The numerically stable product form of the same estimator.
    product = 1.0
    for i in range(10):
        product *= (190 - i) / (200 - i)
    assert pass_at_k(200, 10, 10) == pytest.approx(1 - product)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 1, 0), (5, 1, 6)])
def test_invalid_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="need 0 <= c <= n"):
        pass_at_k(n, c, k)
