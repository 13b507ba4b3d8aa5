"""Hyperparameters chosen on the validation split (cut inside training time), never the test."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmagentos.exceptions import ConfigError
from llmagentos.recommend.baselines import Recommender
from llmagentos.recommend.data import Split
from llmagentos.recommend.metrics import mean_metrics, ranking_metrics, top_k

__all__ = ["Tuned", "offline_metrics", "tune"]

TUNE_METRIC = "NDCG@10"


def offline_metrics(model: Recommender, split: Split, k: int = 10) -> dict[str, float]:
    """Fit ``model`` on the split's training data; its mean metrics on the split's users."""
    model.fit(split.train)
    users = split.eval
    lists = top_k(model.score(users.history), users.seen, k)
    return mean_metrics(ranking_metrics(lists, users.targets, k))


@dataclass(frozen=True, slots=True)
class Tuned:
    """The value chosen and every value's validation metrics."""

    name: str
    parameter: str
    best: float
    table: dict[str, dict[str, float]]  # value (as text) -> metrics

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.name,
            "parameter": self.parameter,
            "chosen": self.best,
            "by": TUNE_METRIC,
            "validation": self.table,
        }


def tune(
    name: str,
    parameter: str,
    grid: Sequence[float],
    make: Callable[[float], Recommender],
    validation: Split,
    *,
    progress: Callable[[str], None] | None = None,
) -> Tuned:
    """The grid value with the best validation NDCG@10 (ties: the first in the grid)."""
    if not grid:
        raise ConfigError(f"{name}.{parameter}", "the grid is empty")
    table: dict[str, dict[str, float]] = {}
    best, best_score = grid[0], float("-inf")
    for value in grid:
        metrics = offline_metrics(make(value), validation)
        table[f"{value:g}"] = metrics
        if metrics[TUNE_METRIC] > best_score:
            best, best_score = value, metrics[TUNE_METRIC]
        if progress is not None:
            progress(f"tune {name} {parameter}={value:g}")
    return Tuned(name, parameter, float(best), table)
