"""Perception for the recommender: an observation becomes one feature row per item.

For the user in session ``s`` at slate ``t``, item ``i`` gets ``φ(s, i)``:

=========  ==================================================================
history    the item model's score from the user's history (EASE: ``h B``)
taken      its score from the items taken this session (0 before any)
skipped    its score from the items shown this session and not taken
trend      ``log(1 + Σ exp(-(now - t_e) / τ))`` over positives told to the agent
           (histories and hits) *before* ``now``, the session's prediction time
popularity ``log(1 + training users who liked i)``
bias       1
=========  ==================================================================

Each column but the bias is divided by its largest absolute value, so weights are
comparable across users. The trend needs a log of what the agent has been told; it
is kept here (:class:`TrendLog`, fed from each new observation's ``revealed``) and
read with a time filter, because a hit's time is when the user rated the movie, which
can be later than the next session's prediction time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from llmagentos.exceptions import ConfigError
from llmagentos.modules.base import Component
from llmagentos.modules.perception import PerceptionModule
from llmagentos.types import Features, Observation

if TYPE_CHECKING:
    from llmagentos.recommend.baselines import Recommender

__all__ = ["FEATURES", "SessionPerception", "TrendLog"]

FEATURES = ("history", "taken", "skipped", "trend", "popularity", "bias")
DAY = 86_400.0


def _scaled(values: np.ndarray) -> np.ndarray:
    top = float(np.abs(values).max()) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)


class TrendLog(Component):
    """Positives the agent was told, with their times; read as a decayed count."""

    def __init__(self, n_items: int, *, half_life_days: float = 60.0) -> None:
        if not half_life_days > 0:
            raise ConfigError("half_life_days", f"must be > 0 (got {half_life_days})")
        self.n_items = n_items
        self.tau = half_life_days * DAY / np.log(2.0)
        self._times: list[float] = []
        self._items: list[int] = []

    def add(self, events: list[tuple[float, int]]) -> None:
        for when, item in events:
            self._times.append(float(when))
            self._items.append(int(item))

    def __len__(self) -> int:
        return len(self._items)

    def vector(self, now: float) -> np.ndarray:
        """``log(1 + Σ_{t_e < now} exp(-(now - t_e) / τ))`` per item."""
        counts = np.zeros(self.n_items)
        if self._times:
            times = np.asarray(self._times)
            past = times < now
            weights = np.exp(-(now - times[past]) / self.tau)
            np.add.at(counts, np.asarray(self._items)[past], weights)
        return np.log1p(counts)

    def state_dict(self) -> dict[str, Any]:
        return {"times": list(self._times), "items": list(self._items)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._times = [float(t) for t in state.get("times", [])]
        self._items = [int(i) for i in state.get("items", [])]


class SessionPerception(PerceptionModule):
    """Observation of :class:`~llmagentos.recommend.env.SessionReplayEnv` -> features.

    The features are ``{"phi": items x 6 array (FEATURES), "excluded": item indices,
    "session": row, "slate": slates shown}``.

    Args:
        item_model: a fitted recommender scoring histories (EASE in the agent).
        popularity: training likes per item.
        half_life_days: the trend's half-life.
    """

    def __init__(
        self,
        item_model: Recommender,
        popularity: np.ndarray,
        *,
        half_life_days: float = 60.0,
    ) -> None:
        super().__init__()
        self.item_model = item_model
        self.n_items = len(popularity)
        self.popularity = _scaled(np.log1p(np.asarray(popularity, dtype=np.float64)))
        self.trend = TrendLog(self.n_items, half_life_days=half_life_days)
        self._tick = -1
        self._session: tuple[int, int] | None = None  # (session, tick of its reset)
        self._fixed = np.zeros((0, 0))  # the session's history, trend and popularity columns

    def components(self) -> tuple[Component, ...]:
        return (self.trend,)

    def _score(self, items: list[int]) -> np.ndarray:
        if not items:
            return np.zeros(self.n_items)
        return _scaled(np.asarray(self.item_model.score_items(items), dtype=np.float64))

    def perceive(self, observation: Observation) -> Features:
        tick = int(observation["tick"])
        if tick > self._tick:  # told once per observation, however often it is read
            self.trend.add(observation["revealed"])
            self._tick = tick
        session, slate = int(observation["session"]), int(observation["slate"])
        if slate == 0 or self._session is None or self._session[0] != session:
            self._session = (session, tick)
            history = self._score([int(i) for i in observation["history"]])
            # Told at this session's start: its own history is before ``now`` too.
            trend = _scaled(self.trend.vector(float(observation["time"])))
            self._fixed = np.stack([history, trend, self.popularity], axis=1)
        taken = [int(i) for i in observation["taken"]]
        chosen = set(taken)
        skipped = [int(i) for i in observation["shown"] if int(i) not in chosen]
        fixed = self._fixed
        phi = np.column_stack(
            [
                fixed[:, 0],
                self._score(taken),
                self._score(skipped),
                fixed[:, 1],
                fixed[:, 2],
                np.ones(self.n_items),
            ]
        )
        return {
            "phi": phi,
            "excluded": np.asarray(observation["excluded"], dtype=np.int64),
            "session": session,
            "slate": slate,
        }
