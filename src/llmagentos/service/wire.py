"""The wire format of module services: one request and one response model per method.

Every request names its ``session``: a service keeps one agent (so one Q-table, one
environment, one state manager) per session, so several agents share a service
without sharing state. Values are JSON; a module's observations, features and actions
must be JSON-able (``check_module`` checks the same rule in-process).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActRequest",
    "ActionReply",
    "DecideRequest",
    "DecisionReply",
    "EpisodeRequest",
    "FeaturesReply",
    "LearnRequest",
    "ObservationReply",
    "OutcomeReply",
    "PerceiveRequest",
    "PerformRequest",
    "ReportReply",
    "ResetRequest",
    "SessionRequest",
    "TrainRequest",
    "TransitionData",
    "UpdateRequest",
]

SESSION_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionRequest(_Wire):
    session: str = Field(pattern=SESSION_PATTERN, description="The agent/session id.")


class ResetRequest(SessionRequest):
    seed: int | None = Field(default=None, ge=0)


class TrainRequest(SessionRequest):
    mode: bool = True


class PerceiveRequest(SessionRequest):
    observation: Any


class DecideRequest(SessionRequest):
    features: Any


class PerformRequest(SessionRequest):
    action: Any


class TransitionData(_Wire):
    observation: Any
    features: Any
    action: Any
    reward: float
    next_observation: Any
    next_features: Any
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = Field(default_factory=dict)


class UpdateRequest(SessionRequest):
    transition: TransitionData


class LearnRequest(SessionRequest):
    observation: Any
    reward: float


class ActRequest(SessionRequest):
    observation: Any


class EpisodeRequest(SessionRequest):
    seed: int | None = Field(default=None, ge=0)
    max_steps: int | None = Field(default=None, ge=1)


class ObservationReply(_Wire):
    observation: Any = None


class FeaturesReply(_Wire):
    features: Any


class DecisionReply(_Wire):
    action: Any
    reason: str | None = None
    scores: list[float] | None = None


class ActionReply(_Wire):
    action: Any


class OutcomeReply(_Wire):
    observation: Any
    reward: float
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = Field(default_factory=dict)


class ReportReply(_Wire):
    report: dict[str, Any] | None = None
