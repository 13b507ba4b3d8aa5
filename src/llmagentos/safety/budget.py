"""Run budgets: steps, tool calls, model tokens and wall time, enforced as the run goes."""

from __future__ import annotations

import time
from dataclasses import dataclass

from llmagentos.exceptions import BudgetExceeded, ConfigError

__all__ = ["RESOURCES", "Budget", "BudgetMeter"]

RESOURCES = ("steps", "tool_calls", "tokens", "seconds")


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits for one run; ``None`` means no limit.

    Attributes:
        steps: environment steps, over all episodes.
        tool_calls: tool calls attempted (denied and refused ones included).
        tokens: model tokens (prompt + completion).
        seconds: wall time the run spends running (pauses do not count).
    """

    steps: int | None = None
    tool_calls: int | None = None
    tokens: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        for name in RESOURCES:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ConfigError(f"budget.{name}", f"must be a number >= 0 (got {value!r})")

    @property
    def unlimited(self) -> bool:
        return all(getattr(self, name) is None for name in RESOURCES)


class BudgetMeter:
    """Counts a run's use and raises :class:`BudgetExceeded` when a limit would be passed.

    Args:
        budget: the limits.
        agent: the agent's name, for the error.
        seconds_before: wall time already spent (by the run before a restart).
    """

    def __init__(self, budget: Budget, *, agent: str = "agent", seconds_before: float = 0.0):
        self.budget = budget
        self.agent = agent
        self.used = {"steps": 0.0, "tool_calls": 0.0, "tokens": 0.0}
        self.seconds_before = seconds_before
        self._started = time.monotonic()

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self._started

    def charge(self, resource: str, amount: float = 1.0) -> None:
        """Count ``amount`` of ``resource``; raise if that passes its limit."""
        used = self.used[resource] + amount
        limit = getattr(self.budget, resource)
        if limit is not None and used > limit:
            raise BudgetExceeded(self.agent, resource, limit, used)
        self.used[resource] = used

    def check_time(self) -> None:
        limit = self.budget.seconds
        if limit is not None and self.seconds > limit:
            raise BudgetExceeded(self.agent, "seconds", limit, round(self.seconds, 3))

    def report(self) -> dict[str, float]:
        return {**self.used, "seconds": round(self.seconds, 3)}
