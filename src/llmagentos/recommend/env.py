"""SessionReplayEnv: the time-ordered test users replayed as recommendation sessions.

One episode is one evaluated user (:class:`~llmagentos.recommend.data.EvalUsers`, in
order of prediction time; each ``reset`` moves to the next). Each step the agent
shows a *slate* of distinct items; the user "takes" the slate items that are among
their targets (movies they rated 4+ later, in the log). The reward is the number of
hits; a shown item is never a candidate again in the session; the episode terminates
when every target is found and is truncated after ``slates`` slates.

What the agent is told, and when (the targets themselves never are):

* at ``reset``: the user, the prediction time, their history (item and time of each
  positive) and every item they rated, which must not be shown;
* after each slate: which items were taken, with the time the user rated them in the
  log (*after* the prediction time: a learner must not use them for an earlier user).

The first slate of a session is scored exactly as the offline models' lists
(same history, exclusions and targets), so its HR/NDCG/Recall@10 sit in one table.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from llmagentos.exceptions import ConfigError, EnvError
from llmagentos.recommend.data import EvalUsers

__all__ = ["SessionReplayEnv", "SlateSpace"]


class SlateSpace(gymnasium.spaces.Space[np.ndarray]):
    """``size`` distinct item indices in ``[0, n_items)`` (fewer only if fewer are left)."""

    def __init__(self, n_items: int, size: int, seed: int | None = None) -> None:
        super().__init__(shape=(size,), dtype=np.int64, seed=seed)
        self.n_items, self.size = n_items, size

    def contains(self, x: Any) -> bool:
        slate = np.asarray(x)
        return bool(
            slate.ndim == 1
            and 1 <= len(slate) <= self.size
            and np.issubdtype(slate.dtype, np.integer)
            and slate.min() >= 0
            and slate.max() < self.n_items
            and len(np.unique(slate)) == len(slate)
        )

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        return self.np_random.choice(self.n_items, size=self.size, replace=False)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"SlateSpace(n_items={self.n_items}, size={self.size})"


class _ObservationSpace(gymnasium.spaces.Space[dict[str, Any]]):
    def __init__(self) -> None:
        super().__init__(shape=None, dtype=None)

    def contains(self, x: Any) -> bool:
        return isinstance(x, dict) and "session" in x and "excluded" in x

    def __repr__(self) -> str:
        return "SessionObservationSpace()"


class SessionReplayEnv(gymnasium.Env[dict[str, Any], np.ndarray]):
    """Replay evaluated users as sessions of slates (module docstring).

    Args:
        users: the evaluated users, ordered by prediction time.
        n_items: the catalogue size.
        slate_size: items per slate.
        slates: slates per session before it is truncated.

    Observations are dicts: ``session`` (row), ``user`` (original id), ``time`` (the
    prediction time), ``slate`` (slates shown so far), ``history`` and
    ``history_time`` (the user's positives), ``excluded`` (items that must not be
    shown: rated before, or shown this session), ``shown`` and ``taken`` (items shown,
    and taken, so far this session), ``revealed`` (``[(time, item), ...]`` told by
    this observation for the first time) and ``tick`` (a serial number of
    observations, so a reader can tell a new one from one it has seen). The step's
    info has ``taken`` (one 0/1 per slate item), ``hits`` (the items taken) and
    ``session``; nothing says how many targets are left (the episode's end does, as
    it would in a real session).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's own name

    def __init__(
        self, users: EvalUsers, n_items: int, *, slate_size: int = 10, slates: int = 5
    ) -> None:
        if len(users) == 0:
            raise ConfigError("users", "no users to replay")
        if slate_size < 1:
            raise ConfigError("slate_size", f"must be at least 1 (got {slate_size})")
        if slates < 1:
            raise ConfigError("slates", f"must be at least 1 (got {slates})")
        if users.targets.shape[1] != n_items:
            raise ConfigError("n_items", f"{n_items} != the users' {users.targets.shape[1]}")
        self.users = users
        self.n_items, self.slate_size, self.slates = n_items, slate_size, slates
        # Each session's rows once, as arrays (slicing a sparse row per step is slow).
        self._rows = [
            (
                users.history[r].indices.copy(),
                users.history_time[r].data.copy(),
                users.seen[r].indices.copy(),
                users.target_time[r].indices.copy(),
                users.target_time[r].data.copy(),
            )
            for r in range(len(users))
        ]
        self.action_space = SlateSpace(n_items, slate_size)
        self.observation_space = _ObservationSpace()
        self.session = -1
        self._tick = 0
        self._targets: dict[int, float] = {}
        self._excluded = np.zeros(n_items, dtype=bool)
        self._taken: list[int] = []
        self._shown_items: list[int] = []
        self._shown = 0

    @property
    def sessions(self) -> int:
        return len(self.users)

    def _observation(self, revealed: list[tuple[float, int]]) -> dict[str, Any]:
        users, row = self.users, self.session
        self._tick += 1
        history, history_time = self._rows[row][:2]
        return {
            "session": row,
            "user": int(users.users[row]),
            "time": int(users.start[row]),
            "slate": self._shown,
            "history": history,
            "history_time": history_time,
            "excluded": np.flatnonzero(self._excluded),
            "shown": list(self._shown_items),
            "taken": list(self._taken),
            "revealed": revealed,
            "tick": self._tick,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        session = (self.session + 1) % self.sessions
        if options and "session" in options:
            session = int(options["session"])
            if not 0 <= session < self.sessions:
                raise EnvError(f"options['session'] must be in [0, {self.sessions}), got {session}")
        self.session = session
        history, history_time, seen, targets, target_time = self._rows[session]
        self._targets = dict(zip(targets.tolist(), target_time.tolist(), strict=True))
        self._excluded = np.zeros(self.n_items, dtype=bool)
        self._excluded[seen] = True
        self._taken, self._shown_items, self._shown = [], [], 0
        revealed = [(float(t), int(i)) for t, i in zip(history_time, history, strict=True)]
        return self._observation(revealed), {"session": session}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self.session < 0:
            raise EnvError("step() before reset()")
        if not self._targets or self._shown >= self.slates:
            raise EnvError(f"session {self.session} has ended; call reset()")
        slate = np.asarray(action, dtype=np.int64)
        if not self.action_space.contains(slate):
            raise EnvError(f"not a slate of distinct items in [0, {self.n_items}): {slate!r:.80}")
        if self._excluded[slate].any():
            bad = slate[self._excluded[slate]].tolist()
            raise EnvError(f"session {self.session}: items {bad} were rated or shown before")
        taken = np.array([int(i) in self._targets for i in slate], dtype=np.float64)
        hits = [int(i) for i in slate[taken > 0]]
        revealed = [(self._targets.pop(i), i) for i in hits]
        self._excluded[slate] = True
        self._taken.extend(hits)
        self._shown_items.extend(int(i) for i in slate)
        self._shown += 1
        terminated = not self._targets
        truncated = not terminated and self._shown >= self.slates
        info = {"taken": taken, "hits": hits, "session": self.session}
        return self._observation(revealed), float(len(hits)), terminated, truncated, info

    def __repr__(self) -> str:
        return (
            f"SessionReplayEnv(sessions={self.sessions}, n_items={self.n_items}, "
            f"slate_size={self.slate_size}, slates={self.slates})"
        )
