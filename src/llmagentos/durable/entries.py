"""What the journal holds besides steps, as the readers of a journal get it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from llmagentos.exceptions import JournalError

if TYPE_CHECKING:
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")

__all__ = ["Approval", "AuditEntry", "Effect", "RunStatus"]


@dataclass(frozen=True, slots=True)
class RunStatus:
    """Where a run stands: its state, why, and the time it has been running."""

    state: str
    detail: str | None
    updated: float
    active_seconds: float


@dataclass(frozen=True, slots=True)
class Approval:
    """A request for a human decision on one sensitive tool call.

    ``digest`` is the call's (:func:`~llmagentos.durable.digest.call_digest` of ``tool``
    and ``arguments``): approving the request authorises that call and no other.
    """

    key: str
    tool: str
    arguments: Any
    reason: str | None
    status: str  # pending, approved, refused
    requested: float
    decided: float | None = None
    decided_by: str | None = None
    note: str | None = None
    digest: str = ""


@dataclass(frozen=True, slots=True)
class Effect:
    """A recorded call: what it was (``kind``, ``name``, ``request``, ``digest``), and
    its ``result`` once ``status`` is ``done`` (``started``: cut off mid-flight)."""

    key: str
    kind: str
    name: str
    request: Any
    digest: str
    status: str
    result: Any

    def result_as(self, model: type[M], *, journal: Path | str, what: str) -> M:
        """The recorded ``result`` read as the pydantic ``model`` it was written from.

        Raises:
            JournalError: the row does not read as one (was the journal edited?).
        """
        from pydantic import ValidationError

        try:
            return model.model_validate(self.result)
        except ValidationError as err:
            raise JournalError(
                f"{journal}: the recorded {what} of {self.key!r} is corrupt "
                f"({err.error_count()} errors); was the journal edited?"
            ) from err


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit trail."""

    seq: int
    at: float
    n: int | None
    kind: str
    subject: str | None
    reason: str | None
    detail: Any
