"""The recommendation agents, each an :class:`~llmagentos.agent.Agent` of four modules.

* :func:`build_bandit_agent`: :class:`~llmagentos.recommend.features.SessionPerception`
  -> :class:`~llmagentos.recommend.planner.ThompsonSlatePlanner` -> the replay
  environment -> :class:`~llmagentos.recommend.learner.SlateFeedbackOptimizer`. With
  ``learn=False`` the learning module has no optimizer: the same agent, never updated.
* :func:`build_ranking_agent`: an offline model's scores as a fixed ranking in the same
  environment (identity perception, no learning), so the baselines run in the same loop.
* :func:`replay`: runs an agent over every session and returns what each slate did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from llmagentos.agent import Agent
from llmagentos.exceptions import ConfigError
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.perception import PerceptionModule
from llmagentos.recommend.bandit import LinearPosterior
from llmagentos.recommend.baselines import Recommender
from llmagentos.recommend.env import SessionReplayEnv
from llmagentos.recommend.features import FEATURES, SessionPerception
from llmagentos.recommend.learner import SlateFeedbackOptimizer
from llmagentos.recommend.planner import RankingPlanner, ThompsonSlatePlanner
from llmagentos.types import StepRecord

__all__ = [
    "BanditSettings",
    "Replay",
    "build_bandit_agent",
    "build_ranking_agent",
    "prior_mean",
    "replay",
]


@dataclass(frozen=True, slots=True)
class BanditSettings:
    """The online agent's settings (defaults chosen on the validation split).

    Attributes:
        noise: the sampling scale ``v`` of Thompson sampling.
        prior_precision: ``λ``, how many observations' worth the prior is.
        half_life_days: the trend feature's half-life.
    """

    noise: float = 0.1
    prior_precision: float = 1.0
    half_life_days: float = 60.0


def prior_mean() -> list[float]:
    """The prior weights: the item model's history score alone (the agent starts as EASE)."""
    return [1.0 if name == "history" else 0.0 for name in FEATURES]


def build_bandit_agent(
    env: SessionReplayEnv,
    item_model: Recommender,
    popularity: np.ndarray,
    *,
    settings: BanditSettings | None = None,
    learn: bool = True,
    seed: int | None = None,
    name: str = "recommender",
) -> Agent:
    """The online recommender: Thompson sampling over features, updated after each slate."""
    chosen = settings or BanditSettings()
    posterior = LinearPosterior(
        prior_mean(), prior_precision=chosen.prior_precision, noise=chosen.noise
    )
    return Agent(
        SessionPerception(item_model, popularity, half_life_days=chosen.half_life_days),
        ThompsonSlatePlanner(posterior, slate_size=env.slate_size, seed=seed),
        ExecutionModule(env),
        LearningModule(SlateFeedbackOptimizer(posterior)) if learn else LearningModule(),
        name=name if learn else f"{name} (no updates)",
    )


def build_ranking_agent(env: SessionReplayEnv, scores: np.ndarray, *, name: str) -> Agent:
    """A fixed ranking (``scores``: sessions x items) shown slate after slate."""
    if scores.shape != (env.sessions, env.n_items):
        raise ConfigError(
            "scores", f"shape {scores.shape} != (sessions, items) {(env.sessions, env.n_items)}"
        )
    return Agent(
        PerceptionModule(),
        RankingPlanner(scores, slate_size=env.slate_size, name=name),
        ExecutionModule(env),
        LearningModule(),
        name=name,
    )


@dataclass(slots=True)
class Replay:
    """Every session of one replay: its first slate and the hits of each slate.

    Attributes:
        first: sessions x slate size, the first slate of each session (-1: no item).
        hits: sessions x slates, hits per slate (0 after a session ended early).
        seconds: wall time of the replay.
    """

    first: np.ndarray
    hits: np.ndarray
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def hits_per_session(self) -> float:
        return float(self.hits.sum(axis=1).mean())


def replay(
    agent: Agent, *, seed: int | None = None, progress: Callable[[int], None] | None = None
) -> Replay:
    """Run ``agent`` once over every session of its environment, in time order.

    ``seed`` seeds the first reset only (later sessions continue the streams), so a
    seeded replay is reproducible as a whole. ``progress`` is called after each session.
    """
    env = agent.execution_module.env
    if not isinstance(env, SessionReplayEnv):
        raise ConfigError("agent", "the agent's execution module must act in a SessionReplayEnv")
    env.session = -1  # the first reset starts at session 0
    first = np.full((env.sessions, env.slate_size), -1, dtype=np.int64)
    hits = np.zeros((env.sessions, env.slates))
    reasons: list[str] = []

    def listen(record: StepRecord) -> None:
        row = int(record.info["session"])
        if record.step == 0:
            slate = np.asarray(record.action)
            first[row, : len(slate)] = slate
            reasons.append(record.reason or "")
        hits[row, record.step] = record.reward

    agent.listeners.append(listen)
    try:
        result = agent.run(env.sessions, seed=seed, on_episode=_tick(progress))
    finally:
        agent.listeners.remove(listen)
    seconds = sum(e.seconds for e in result.episodes)
    return Replay(first, hits, seconds, reasons)


def _tick(progress: Callable[[int], None] | None) -> Callable[..., None] | None:
    if progress is None:
        return None

    def on_episode(result: object) -> None:
        progress(1)

    return on_episode
