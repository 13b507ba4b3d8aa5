"""Planners that show a slate: Thompson sampling over the features, or a fixed ranking.

Both choose the ``slate_size`` best items that are not excluded (rated before or shown
this session), ties to the lower item index, so the same scores give the same slate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmagentos.exceptions import ConfigError
from llmagentos.modules.base import Component
from llmagentos.modules.planning import PlanningModule
from llmagentos.recommend.bandit import LinearPosterior
from llmagentos.types import Decision, Features

__all__ = ["RankingPlanner", "ThompsonSlatePlanner", "best_slate"]


def best_slate(scores: np.ndarray, excluded: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` highest-scoring items outside ``excluded``, best first."""
    masked = np.array(scores, dtype=np.float64, copy=True)
    masked[np.asarray(excluded, dtype=np.int64)] = -np.inf
    k = min(size, len(masked))
    if k < 1:
        return np.zeros(0, dtype=np.int64)
    # Partition for the k best, then order every item tied with the k-th by
    # (-score, index): argpartition alone would break ties arbitrarily.
    threshold = masked[np.argpartition(-masked, k - 1)[:k]].min()
    candidates = np.flatnonzero(masked >= threshold)
    order = candidates[np.lexsort((candidates, -masked[candidates]))][:k]
    return order[np.isfinite(masked[order])]


class ThompsonSlatePlanner(PlanningModule):
    """Sample ``w̃`` from the shared posterior and show the slate of highest ``w̃ · φ``.

    Not training (``agent.eval()``), it uses the posterior mean instead of a sample.

    Args:
        posterior: the weights' posterior (shared with the learner).
        slate_size: items per slate.
        seed: seeds the sampling (``reset(seed=...)`` reseeds it).
    """

    def __init__(
        self, posterior: LinearPosterior, *, slate_size: int = 10, seed: int | None = None
    ) -> None:
        super().__init__()
        if slate_size < 1:
            raise ConfigError("slate_size", f"must be at least 1 (got {slate_size})")
        self.posterior = posterior
        self.slate_size = slate_size
        self.rng = np.random.default_rng(seed)

    def components(self) -> tuple[Component, ...]:
        return (self.posterior,)

    def reset(self, *, seed: int | None = None) -> Any:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        return super().reset(seed=seed)

    def decide(self, features: Features) -> Decision:
        weights = self.posterior.sample(self.rng) if self.training else self.posterior.mean()
        phi = features["phi"]
        slate = best_slate(phi @ weights, features["excluded"], self.slate_size)
        how = "thompson" if self.training else "posterior mean"
        shown = ", ".join(f"{w:.3f}" for w in weights)
        return Decision(slate, reason=f"{how}: w=[{shown}]")


class RankingPlanner(PlanningModule):
    """A fixed score per (session, item), e.g. an offline model's: the next best slate.

    Args:
        scores: sessions x items, higher first.
        slate_size: items per slate.
        name: shown in the decision's reason.
    """

    def __init__(self, scores: np.ndarray, *, slate_size: int = 10, name: str = "ranking") -> None:
        super().__init__()
        if scores.ndim != 2:
            raise ConfigError("scores", f"must be sessions x items (got shape {scores.shape})")
        self.scores = scores
        self.slate_size = slate_size
        self.name = name

    def decide(self, features: Features) -> Decision:
        row = int(features["session"])
        slate = best_slate(self.scores[row], features["excluded"], self.slate_size)
        return Decision(slate, reason=f"{self.name}: next {len(slate)} of its ranking")
