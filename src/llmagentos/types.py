"""The data that flows between modules: decisions, outcomes, transitions and step records.

Observations, features and actions are whatever the modules agree on, as long as it is
JSON-able data (numbers, strings, lists, dicts, NumPy values, pydantic models); that is
what lets a later placement put any module behind HTTP. The records below are
slotted dataclasses: cheap on the hot path, and serializable with :meth:`to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

from llmagentos._json import jsonable

__all__ = [
    "Action",
    "Decision",
    "EpisodeResult",
    "Features",
    "Observation",
    "Outcome",
    "RunResult",
    "StepRecord",
    "Transition",
]

Observation: TypeAlias = Any
Features: TypeAlias = Any
Action: TypeAlias = Any


@dataclass(slots=True)
class Decision:
    """What a planner chose, and why.

    Attributes:
        action: the chosen action.
        reason: a short human-readable reason ("greedy: Q=7.20 is the best of 6").
        scores: the per-action scores the choice was made from (e.g. Q-values), if any.
        details: what else the choice weighed, as JSON-able data for explanations: the
            source that decided (``"q"``, ``"llm"``, ``"explore"``...), visit counts, a
            model's proposal and what overruled it. ``None`` when there is nothing more.
    """

    action: Action
    reason: str | None = None
    scores: list[float] | None = None
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"action": jsonable(self.action), "reason": self.reason, "scores": self.scores}
        if self.details is not None:
            data["details"] = jsonable(self.details)
        return data


@dataclass(slots=True)
class Outcome:
    """What executing one action produced: Gymnasium's five-tuple as a record."""

    observation: Observation
    reward: float
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def to_dict(self) -> dict[str, Any]:
        return {
            "observation": jsonable(self.observation),
            "reward": self.reward,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "info": jsonable(self.info),
        }


@dataclass(slots=True)
class Transition:
    """One full transition (s, a, r, s', done) as the policy optimizer sees it.

    ``features`` and ``next_features`` are the perceived states; ``next_action`` is the
    action the agent will take next (known only to on-policy learners such as SARSA).
    """

    observation: Observation
    features: Features
    action: Action
    reward: float
    next_observation: Observation
    next_features: Features
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def to_dict(self) -> dict[str, Any]:
        return {
            "observation": jsonable(self.observation),
            "features": jsonable(self.features),
            "action": jsonable(self.action),
            "reward": self.reward,
            "next_observation": jsonable(self.next_observation),
            "next_features": jsonable(self.next_features),
            "terminated": self.terminated,
            "truncated": self.truncated,
            "info": jsonable(self.info),
        }


@dataclass(slots=True)
class StepRecord:
    """Everything one agent step saw, decided, did and learned: the trace line.

    Attributes:
        episode: episode index since the agent was created.
        step: step index within the episode (0-based).
        observation: what the agent observed before acting.
        features: what perception made of it.
        action: what the planner chose.
        reason: the planner's stated reason, if it gave one.
        scores: the planner's per-action scores, if any.
        reward: the reward execution returned (after the learning module's reward
            function, see ``learning``).
        next_observation: the observation execution returned.
        terminated: the episode reached a terminal state.
        truncated: the episode was cut short (time limit).
        info: the environment's info dict.
        learning: what the learner reported (e.g. TD error, old and new Q-value).
        timings: seconds spent per phase (``perceive``, ``plan``, ``execute``, ``learn``).
        training: whether the agent was in training mode.
        details: the planner's :attr:`Decision.details` (what it weighed), if any.
    """

    episode: int
    step: int
    observation: Observation
    features: Features
    action: Action
    reason: str | None
    scores: list[float] | None
    reward: float
    next_observation: Observation
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    learning: dict[str, Any] | None = None
    timings: dict[str, float] | None = None
    training: bool = True
    details: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-able data (one JSONL line of a trace)."""
        return {
            "episode": self.episode,
            "step": self.step,
            "observation": jsonable(self.observation),
            "features": jsonable(self.features),
            "action": jsonable(self.action),
            "reason": self.reason,
            "scores": jsonable(self.scores),
            "reward": jsonable(self.reward),
            "next_observation": jsonable(self.next_observation),
            "terminated": self.terminated,
            "truncated": self.truncated,
            "info": jsonable(self.info),
            "learning": jsonable(self.learning),
            "timings": self.timings,
            "training": self.training,
            "details": jsonable(self.details),
        }


@dataclass(slots=True)
class EpisodeResult:
    """The summary of one episode."""

    episode: int
    total_reward: float
    length: int
    terminated: bool
    truncated: bool
    seed: int | None = None
    seconds: float = 0.0
    training: bool = True
    success: bool | None = None
    """What the environment said (``info["is_success"]`` at the last step), if it says."""

    @property
    def succeeded(self) -> bool:
        """The environment's verdict, or a positive return when it gives none."""
        return self.success if self.success is not None else self.total_reward > 0

    @property
    def return_(self) -> float:
        """Alias of ``total_reward`` (the undiscounted return)."""
        return self.total_reward

    def to_dict(self) -> dict[str, Any]:
        return {
            "episode": self.episode,
            "return": self.total_reward,
            "length": self.length,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "seed": self.seed,
            "seconds": self.seconds,
            "training": self.training,
            "success": self.success,
        }


@dataclass(slots=True)
class RunResult:
    """The episodes of one :meth:`Agent.run` call, with summary statistics."""

    episodes: list[EpisodeResult] = field(default_factory=list)
    interrupted: bool = False
    workers_replaced: int = 0
    """Ray runs: workers that died and were replaced (their episodes were run again)."""

    @property
    def returns(self) -> list[float]:
        return [e.total_reward for e in self.episodes]

    @property
    def mean_return(self) -> float:
        returns = self.returns
        return sum(returns) / len(returns) if returns else float("nan")

    @property
    def success_rate(self) -> float:
        """Share of successful episodes: the env's ``is_success``, else a positive return."""
        if not self.episodes:
            return float("nan")
        return sum(1 for e in self.episodes if e.succeeded) / len(self.episodes)

    @property
    def total_steps(self) -> int:
        return sum(e.length for e in self.episodes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "episodes": [e.to_dict() for e in self.episodes],
            "mean_return": jsonable(self.mean_return),
            "success_rate": jsonable(self.success_rate),
            "total_steps": self.total_steps,
            "interrupted": self.interrupted,
        }
