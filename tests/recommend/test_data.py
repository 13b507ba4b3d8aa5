"""The time-ordered split: nothing from after the cut is trained on, histories precede
targets, and the real MovieLens set is what the docs say it is."""

from __future__ import annotations

import numpy as np
import pytest

from llmagentos.exceptions import ConfigError
from llmagentos.recommend.data import Dataset, Ratings, time_split


def tiny() -> Ratings:
    """10 ratings; the cut (test_fraction 0.4) falls at t=7."""
    rows = [
        # user, movie, rating, time
        (1, 10, 5.0, 1),
        (1, 11, 4.0, 2),
        (2, 10, 4.0, 3),
        (2, 12, 2.0, 4),
        (3, 11, 5.0, 5),
        (3, 12, 4.0, 6),
        (4, 10, 4.5, 7),  # after the cut: user 4's history (first half)...
        (4, 13, 5.0, 8),  # ...history too (movie 13 is new: not an item)
        (4, 11, 4.0, 9),  # target
        (4, 12, 5.0, 10),  # target
    ]
    return Ratings.of(*zip(*rows, strict=True))


def test_tiny_split_by_hand() -> None:
    split = time_split(tiny(), test_fraction=0.4, history_fraction=0.5)
    assert split.stats.cut_time == 7
    assert split.items.tolist() == [10, 11, 12]  # movies rated before the cut
    assert split.train_users.tolist() == [1, 2, 3]
    # Training positives only: user 2's 2-star rating of movie 12 is not one.
    assert split.train.toarray().tolist() == [[1, 1, 0], [1, 0, 0], [0, 1, 1]]
    users = split.eval
    assert users.users.tolist() == [4]
    assert users.history.toarray().tolist() == [[1, 0, 0]]
    assert users.history_time.data.tolist() == [7.0]
    assert users.targets.toarray().tolist() == [[0, 1, 1]]
    assert users.target_time.data.tolist() == [9.0, 10.0]
    assert users.start.tolist() == [9]
    assert split.stats.dropped_targets == 0


def test_new_movies_among_targets_are_dropped_and_counted() -> None:
    split = time_split(tiny(), test_fraction=0.4, history_fraction=0.25)
    # History: (10, t=7); future: 13 (new movie, dropped), 11, 12.
    assert split.eval.targets.toarray().tolist() == [[0, 1, 1]]
    assert split.stats.dropped_targets == 1


def test_no_rating_at_or_after_the_cut_is_trained_on(subset: Dataset) -> None:
    for split in (subset.test, subset.validation):
        cut = split.stats.cut_time
        users = split.eval
        assert len(users) > 20
        for row in range(len(users)):
            history_time = users.history_time[row].data
            target_time = users.target_time[row].data
            # Every target lies after the prediction time, every history rating before it,
            # and the prediction time is after the cut.
            assert history_time.max() < users.start[row] <= target_time.min()
            assert users.start[row] >= cut
        assert np.all(np.diff(users.start) >= 0)  # sessions in time order
        # Nothing recommended may be something the user rated; no target was seen.
        assert users.targets.multiply(users.seen).nnz == 0
        assert users.history.multiply(users.seen).nnz == users.history.nnz


def test_the_validation_split_lies_inside_training_time(subset: Dataset) -> None:
    assert subset.validation.eval.target_time.data.max() < subset.test.stats.cut_time
    assert subset.validation.stats.train_ratings < subset.test.stats.train_ratings


def test_the_real_movielens(movielens: Ratings) -> None:
    assert len(movielens) == 100_004
    assert len(np.unique(movielens.user)) == 671
    assert np.all(np.diff(movielens.timestamp) >= 0)
    split = time_split(movielens)
    stats = split.stats
    assert stats.train_ratings == 70_003  # the first 70% by time
    assert stats.eval_users == 202 and stats.items == 6194
    assert split.train.shape == (stats.train_users, stats.items)
    assert set(np.unique(split.train.data)) == {1.0}


def test_bad_fractions_name_the_field() -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        time_split(tiny(), test_fraction=1.0)
    with pytest.raises(ConfigError, match="history_fraction"):
        time_split(tiny(), history_fraction=-0.1)
    with pytest.raises(ConfigError, match="users"):
        tiny().users_subset(99)
