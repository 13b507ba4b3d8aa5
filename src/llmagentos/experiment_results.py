"""What a run did: the records ``results.json`` is made of, and the run's progress hooks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmagentos._json import jsonable
from llmagentos._version import __version__
from llmagentos.config import RunConfig
from llmagentos.types import EpisodeResult

__all__ = ["RESULTS_FORMAT", "ExperimentResult", "PhaseResult", "RunCallbacks"]

RESULTS_FORMAT = "llmagentos.results"
_RESULTS_VERSION = 1

# -- results ------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


@dataclass(slots=True)
class PhaseResult:
    """The finished episodes of one phase (``train`` or ``eval``)."""

    phase: str
    planned: int
    seed: int | None
    episodes: list[EpisodeResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def returns(self) -> list[float]:
        return [e.total_reward for e in self.episodes]

    @property
    def lengths(self) -> list[int]:
        return [e.length for e in self.episodes]

    @property
    def steps(self) -> int:
        return sum(e.length for e in self.episodes)

    @property
    def completed(self) -> bool:
        return len(self.episodes) == self.planned

    @property
    def mean_return(self) -> float | None:
        return _mean(self.returns)

    @property
    def min_return(self) -> float | None:
        return min(self.returns, default=None)

    @property
    def max_return(self) -> float | None:
        return max(self.returns, default=None)

    @property
    def success_rate(self) -> float | None:
        """Share of successful episodes: the env's ``is_success``, else a positive return."""
        if not self.episodes:
            return None
        return sum(1 for e in self.episodes if e.succeeded) / len(self.episodes)

    @property
    def steps_per_second(self) -> float | None:
        return self.steps / self.seconds if self.seconds > 0 else None

    def recent_mean(self, window: int = 100) -> float | None:
        """Mean return of the last ``window`` episodes."""
        return _mean(self.returns[-window:])

    def to_dict(self) -> dict[str, Any]:
        return {
            "planned_episodes": self.planned,
            "episodes": len(self.episodes),
            "seed": self.seed,
            "returns": self.returns,
            "lengths": self.lengths,
            "steps": self.steps,
            "seconds": self.seconds,
            "mean_return": self.mean_return,
            "min_return": self.min_return,
            "max_return": self.max_return,
            "success_rate": self.success_rate,
        }


@dataclass(slots=True)
class ExperimentResult:
    """What a run did and wrote; :meth:`to_dict` is the content of ``results.json``."""

    config: RunConfig
    output_dir: Path
    started_at: str
    train: PhaseResult | None = None
    eval: PhaseResult | None = None
    baseline_train: PhaseResult | None = None
    baseline_eval: PhaseResult | None = None
    interrupted: bool = False
    error: str | None = None
    stopped: str | None = None
    """Why a durable run stopped early on purpose: ``paused: ...`` or ``budget_exceeded: ...``."""
    wall_seconds: float = 0.0
    counters: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def phases(self) -> list[PhaseResult]:
        phases = (self.train, self.eval, self.baseline_train, self.baseline_eval)
        return [p for p in phases if p is not None]

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def summary(self) -> dict[str, Any]:
        return {
            "eval_mean_return": self.eval.mean_return if self.eval else None,
            "eval_success_rate": self.eval.success_rate if self.eval else None,
            "train_mean_return": self.train.mean_return if self.train else None,
            "train_episodes": len(self.train.episodes) if self.train else 0,
            "eval_episodes": len(self.eval.episodes) if self.eval else 0,
            "baseline_eval_mean_return": (
                self.baseline_eval.mean_return if self.baseline_eval else None
            ),
            "baseline_train_mean_return": (
                self.baseline_train.mean_return if self.baseline_train else None
            ),
            "total_steps": self.total_steps,
            "wall_seconds": self.wall_seconds,
            "interrupted": self.interrupted,
        }

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": RESULTS_FORMAT,
            "version": _RESULTS_VERSION,
            "llmagentos_version": __version__,
            "name": self.config.name,
            "env": self.config.env.id,
            "started_at": self.started_at,
            "interrupted": self.interrupted,
            "error": self.error,
            "stopped": self.stopped,
            "summary": self.summary(),
            "train": self.train.to_dict() if self.train else None,
            "eval": self.eval.to_dict() if self.eval else None,
            "baseline": None
            if self.config.baseline is None
            else {
                "train": self.baseline_train.to_dict() if self.baseline_train else None,
                "eval": self.baseline_eval.to_dict() if self.baseline_eval else None,
            },
            "counters": self.counters,
            "files": {kind: path.name for kind, path in self.files.items()},
            "notes": self.notes,
            "config": self.config.model_dump(mode="json"),
        }
        return jsonable(data)  # type: ignore[no-any-return]


class RunCallbacks:
    """Progress hooks for :meth:`Experiment.run`. The defaults do nothing; override any."""

    def phase_started(self, phase: PhaseResult) -> None:
        """A phase is about to run ``phase.planned`` episodes."""

    def episode_finished(self, phase: PhaseResult, episode: EpisodeResult) -> None:
        """An episode finished; it is already in ``phase.episodes``."""

    def phase_finished(self, phase: PhaseResult) -> None:
        """A phase ended, completed or not (also on Ctrl-C and errors)."""
