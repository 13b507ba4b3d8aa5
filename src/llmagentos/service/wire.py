"""The wire format of module services: one request and one response model per method.

Every request names its ``session``: a service keeps one agent (so one Q-table, one
environment, one state manager) per session, so several agents share a service
without sharing state. Values are JSON; a module's observations, features and actions
must be JSON-able (``check_module`` checks the same rule in-process).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictBool

__all__ = [
    "ActRequest",
    "ActionReply",
    "DecideRequest",
    "DecisionReply",
    "ErrorReply",
    "EpisodeRequest",
    "FeaturesReply",
    "LearnRequest",
    "MODULE_ERRORS",
    "ObservationReply",
    "OutcomeReply",
    "PerceiveRequest",
    "PerformRequest",
    "ReportReply",
    "ResetRequest",
    "LIST_ERRORS",
    "SESSION_ERRORS",
    "SESSION_PATTERN",
    "SessionRequest",
    "SessionsReply",
    "TrainRequest",
    "TransitionData",
    "UpdateRequest",
    "idempotency_key_reused",
]

SESSION_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


def _whole_number(value: Any) -> Any:
    # JSON Schema's "integer" admits 3.0 but not true or "3"; pydantic's lax int is the
    # other way round, so the wire says exactly what its schema says.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


Seed = Annotated[int, BeforeValidator(_whole_number), Field(ge=0)]
StepCount = Annotated[int, BeforeValidator(_whole_number), Field(ge=1)]
Number = Annotated[float, Strict()]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionRequest(_Wire):
    session: str = Field(pattern=SESSION_PATTERN, description="The agent/session id.")


class ResetRequest(SessionRequest):
    seed: Seed | None = None


class TrainRequest(SessionRequest):
    mode: StrictBool = True


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
    reward: Number
    next_observation: Any
    next_features: Any
    terminated: StrictBool = False
    truncated: StrictBool = False
    info: dict[str, Any] = Field(default_factory=dict)


class UpdateRequest(SessionRequest):
    transition: TransitionData


class LearnRequest(SessionRequest):
    observation: Any
    reward: Number


class ActRequest(SessionRequest):
    observation: Any


class EpisodeRequest(SessionRequest):
    seed: Seed | None = None
    max_steps: StepCount | None = None


class ObservationReply(_Wire):
    observation: Any = None


class FeaturesReply(_Wire):
    features: Any


class DecisionReply(_Wire):
    action: Any
    reason: str | None = None
    scores: list[float] | None = None
    details: dict[str, Any] | None = None


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


class SessionsReply(_Wire):
    sessions: list[str] = Field(description="The caller's session ids, sorted.")
    truncated: bool = Field(description="More sessions exist than the limit asked for.")


class ErrorReply(BaseModel):
    """A refused request: what went wrong, and the module or field it concerns."""

    detail: str
    module: str | None = None
    field: str | None = None
    reason: str | None = None
    limit: int | None = None


_REFUSED_PRINCIPAL: dict[str, Any] = {
    "model": ErrorReply,
    "description": "No valid signed principal (reason: missing, invalid, expired, mismatch).",
}
_REFUSED_STATE: dict[str, Any] = {
    "model": ErrorReply,
    "description": "The stored state was refused: forged, copied from another session, "
    "or rolled back (reason); nothing was loaded or changed.",
}


#: The error replies a module route may give besides validation's 422.
MODULE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorReply, "description": "The module refused the value (named)."},
    401: _REFUSED_PRINCIPAL,
    409: {
        "model": ErrorReply,
        "description": "Another replica moved the session on meanwhile; the call was not "
        "applied and may be sent again.",
    },
    413: {"model": ErrorReply, "description": "The body is over max_body_bytes."},
    429: {
        "model": ErrorReply,
        "description": "A new session over the tenant's quota (max_sessions_per_tenant), "
        "with no store to save an idle one to.",
    },
    500: _REFUSED_STATE,
    503: {
        "model": ErrorReply,
        "description": "A backend the module needs is down, the store does not answer, or "
        "no session can make room (field: the limit); with Retry-After.",
    },
}
#: The error replies of a session route.
SESSION_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _REFUSED_PRINCIPAL,
    404: {"model": ErrorReply, "description": "No such session (of the caller's tenant)."},
    409: {"model": ErrorReply, "description": "The session kept changing meanwhile."},
    500: _REFUSED_STATE,
    503: {"model": ErrorReply, "description": "The store does not answer; with Retry-After."},
}
#: The error replies of the listing.
LIST_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _REFUSED_PRINCIPAL,
    503: {"model": ErrorReply, "description": "The store does not answer; with Retry-After."},
}


def idempotency_key_reused(key: str, earlier: str, now: str) -> Exception:
    """The 422 for an ``Idempotency-Key`` sent again with another request than the one
    it was first sent with (``earlier``, ``now``: their method and target), in the
    shape of validation's own 422, naming the header. Nothing is applied for it."""
    from fastapi.exceptions import RequestValidationError

    other = "with another body" if earlier == now else f"for {earlier}"
    message = (
        f"Idempotency-Key {key!r} was already used {other} in this session; send a new "
        "key with a new request (a key again only with the very request it came with)"
    )
    error = {
        "type": "idempotency_key_reused",
        "loc": ("header", "Idempotency-Key"),
        "msg": message,
        "input": key,
    }
    return RequestValidationError([error])
