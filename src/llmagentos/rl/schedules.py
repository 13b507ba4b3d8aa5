"""Hyperparameter schedules: a value as a function of elapsed steps or episodes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from llmagentos.exceptions import ConfigError
from llmagentos.modules.base import Component

__all__ = [
    "Clocked",
    "Constant",
    "Exponential",
    "Linear",
    "Schedule",
    "ScheduleLike",
    "as_schedule",
    "check_range",
]

Unit = Literal["step", "episode"]


@runtime_checkable
class Schedule(Protocol):
    """A value that changes with time. ``per`` says whether time counts steps or episodes."""

    @property
    def per(self) -> Unit: ...

    def value(self, t: int) -> float: ...


@dataclass(frozen=True, slots=True)
class Constant:
    """Always ``level``."""

    level: float
    per: Unit = "step"

    def value(self, t: int) -> float:
        return self.level


@dataclass(frozen=True, slots=True)
class Linear:
    """From ``start`` to ``end`` linearly over ``duration`` units, then ``end``."""

    start: float
    end: float
    duration: int
    per: Unit = "step"

    def __post_init__(self) -> None:
        if self.duration < 1:
            raise ConfigError("duration", f"must be at least 1 (got {self.duration})")

    def value(self, t: int) -> float:
        if t >= self.duration:
            return self.end
        return self.start + (self.end - self.start) * (t / self.duration)


@dataclass(frozen=True, slots=True)
class Exponential:
    """``start * decay**t``, never past ``end``."""

    start: float
    end: float
    decay: float
    per: Unit = "step"

    def __post_init__(self) -> None:
        if not 0.0 < self.decay <= 1.0:
            raise ConfigError("decay", f"must be in (0, 1] (got {self.decay})")

    def value(self, t: int) -> float:
        raw = self.start * math.pow(self.decay, t)
        return max(raw, self.end) if self.start >= self.end else min(raw, self.end)


ScheduleLike = float | int | Schedule | dict[str, Any]

_KINDS: dict[str, type[Constant] | type[Linear] | type[Exponential]] = {
    "constant": Constant,
    "linear": Linear,
    "exponential": Exponential,
}


def _endpoints(schedule: Schedule) -> dict[str, float]:
    """The values a schedule starts and ends at, by parameter name."""
    if isinstance(schedule, Constant):
        return {"": schedule.level}
    if isinstance(schedule, Linear | Exponential):
        return {"start": schedule.start, "end": schedule.end}
    return {}


def check_range(
    schedule: Schedule, field: str, *, low: float, high: float, low_open: bool = False
) -> Schedule:
    """Raise :class:`ConfigError` unless the schedule stays within ``[low, high]``.

    ``low_open`` excludes ``low`` itself (a step size of 0 learns nothing).
    """
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    for name, value in _endpoints(schedule).items():
        below = value <= low if low_open else value < low
        if below or value > high or math.isnan(value):
            where = f"{field}.{name}" if name else field
            raise ConfigError(where, f"must be in {interval} (got {value:g})")
    return schedule


def as_schedule(spec: ScheduleLike, *, field: str = "schedule") -> Schedule:
    """Build a schedule from a number, a schedule, or a config dict.

    The dict form is ``{"type": "linear", "start": 1.0, "end": 0.05, "duration": 500,
    "per": "episode"}`` (``type`` one of ``constant``, ``linear``, ``exponential``).

    Raises:
        ConfigError: the spec is malformed; the message names ``field``.
    """
    if isinstance(spec, bool):
        raise ConfigError(field, f"expected a number or a schedule, got {spec!r}")
    if isinstance(spec, int | float):
        return Constant(float(spec))
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, dict):
        raise ConfigError(field, f"expected a number or a schedule, got {type(spec).__name__}")
    params = dict(spec)
    kind = params.pop("type", None)
    if kind not in _KINDS:
        raise ConfigError(f"{field}.type", f"must be one of {', '.join(_KINDS)} (got {kind!r})")
    if kind == "constant" and "value" in params:
        params["level"] = params.pop("value")
    per = params.get("per", "step")
    if per not in ("step", "episode"):
        raise ConfigError(f"{field}.per", f"must be 'step' or 'episode' (got {per!r})")
    try:
        return _KINDS[kind](**params)
    except ConfigError as err:
        raise ConfigError(f"{field}.{err.field}", err.problem) from err
    except TypeError as err:
        raise ConfigError(field, f"bad parameters for a {kind} schedule: {err}") from err


class Clocked(Component):
    """A component whose schedules run on its own training step and episode counters.

    ``episodes`` is the index of the current training episode: the first training
    ``reset`` starts episode 0, every later one the next. Evaluation resets do not count,
    and subclasses count steps only while training. The counters are its
    ``state_dict``, so a saved and resumed run continues its schedules where it stopped.
    """

    steps: int = 0
    episodes: int = 0
    _started: bool = False

    def reset(self, *, seed: int | None = None) -> None:
        if not self.training:
            return
        if self._started:
            self.episodes += 1
        self._started = True

    def now(self, schedule: Schedule) -> float:
        """The schedule's current value."""
        if type(schedule) is Constant:  # the common case, without two more calls
            return schedule.level
        return schedule.value(self.steps if schedule.per == "step" else self.episodes)

    def state_dict(self) -> dict[str, Any]:
        """``episodes`` here counts the training episodes begun so far."""
        return {"steps": self.steps, "episodes": self.episodes + self._started}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The next training reset begins episode number `episodes`.
        self.steps = int(state.get("steps", 0))
        self.episodes = int(state.get("episodes", 0))
        self._started = False
