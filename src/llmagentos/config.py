"""Run configuration: what ``llmagentos run CONFIG`` reads from a TOML or YAML file.

Example (TOML)::

    name = "taxi"

    [env]
    id = "Taxi-v4"

    [agent.planning]
    type = "epsilon_greedy"
    epsilon = { type = "linear", start = 1.0, end = 0.05, duration = 2000, per = "episode" }

    [agent.learning]
    type = "q_learning"
    alpha = 0.5
    gamma = 0.99

    [train]
    episodes = 3000
    seed = 0

    [eval]
    episodes = 1000
    seed = 10000

Each module of ``[agent]`` is a registry name (``"q_learning"``) or a table whose
``type`` is a registry name or an import path (``"mypkg.agents:MyPlanner"``); the
other keys of the table are the factory's parameters. Every error names its field.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmagentos.exceptions import ConfigError

__all__ = [
    "AgentConfig",
    "BudgetConfig",
    "EnvConfig",
    "ModuleSpec",
    "OutputConfig",
    "PhaseConfig",
    "RunConfig",
    "load_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModuleSpec(BaseModel):
    """A module by registry name or import path, with its parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _spec(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class EnvConfig(_Strict):
    """The environment: a registered id and its constructor arguments."""

    id: str = Field(min_length=1)
    max_episode_steps: int | None = Field(default=None, ge=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class AgentConfig(_Strict):
    """The four modules. ``perception = "auto"`` picks ``discrete`` for discrete spaces."""

    perception: ModuleSpec = ModuleSpec(type="auto")
    planning: ModuleSpec = ModuleSpec(type="epsilon_greedy")
    execution: ModuleSpec = ModuleSpec(type="env")
    learning: ModuleSpec = ModuleSpec(type="q_learning")
    q_initial: float = 0.0

    @field_validator("perception", "planning", "execution", "learning", mode="before")
    @classmethod
    def _accept_names(cls, value: Any) -> Any:
        return _spec(value)


class PhaseConfig(_Strict):
    """A training or evaluation phase."""

    episodes: int = Field(ge=0)
    seed: int | None = 0
    max_steps: int | None = Field(default=None, ge=1)


class OutputConfig(_Strict):
    """What the run writes, and where.

    ``durable = true`` journals every step to ``run.db`` in the output folder: a run
    killed at any point continues with ``llmagentos runs resume DIR``. ``durability``
    is what the journal survives: ``"process"`` (the process being killed, SIGKILL
    included) or ``"power_loss"`` (the machine going down; costs an ``fsync`` per group
    of steps and per tool or model call). docs/durable.md says exactly what each keeps.
    """

    dir: Path | None = None
    trace_train_every: int = Field(default=100, ge=0)
    trace_eval_episodes: int = Field(default=10, ge=0)
    plot: bool = True
    durable: bool = False
    durability: Literal["process", "power_loss"] = "process"


class BudgetConfig(_Strict):
    """Limits the run enforces as it goes (durable runs count across restarts)."""

    steps: int | None = Field(default=None, ge=0)
    tool_calls: int | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    seconds: float | None = Field(default=None, ge=0)


class TelemetryConfig(_Strict):
    """OpenTelemetry traces and metrics of the run (docs/telemetry.md); off by default.

    ``exporter = "file"`` keeps the spans in ``spans.jsonl`` in the output folder (what
    ``llmagentos explain`` and the dashboard read); ``"otlp"`` sends them over HTTP to
    ``endpoint`` (a collector, Phoenix, Jaeger); ``"console"`` prints them.
    """

    exporter: Literal["off", "file", "otlp", "console"] = "off"
    endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    record_content: bool = False
    """Put prompts, replies and tool arguments into spans (they may hold user data)."""
    service_name: str | None = Field(default=None, min_length=1)
    """The spans' ``service.name`` (default: the run's name)."""


class RunConfig(_Strict):
    """A whole run: environment, agent, training and evaluation phases, outputs."""

    name: str = Field(default="run", pattern=r"^[A-Za-z0-9_.-]+$")
    env: EnvConfig
    agent: AgentConfig = AgentConfig()
    train: PhaseConfig | None = None
    eval: PhaseConfig | None = None
    resume: Path | None = None
    baseline: AgentConfig | None = None
    """Another agent run on the same environment with the same seeds, for comparison."""
    output: OutputConfig = OutputConfig()
    budget: BudgetConfig | None = None
    telemetry: TelemetryConfig = TelemetryConfig()

    def output_dir(self) -> Path:
        return self.output.dir if self.output.dir is not None else Path("runs") / self.name


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not re.fullmatch(r"function-[a-z-]+\[.*\]", item):  # pydantic's validator labels
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def config_error(err: ValidationError) -> ConfigError:
    """The first validation error as a one-line :class:`ConfigError`."""
    first = err.errors()[0]
    field = _location(first["loc"])
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "missing":
        message = "required field is missing"
    elif "input" in first and first["type"] not in ("missing",):
        message += f" (got {first['input']!r:.60})"
    return ConfigError(field, message)


def parse_config(data: Any) -> RunConfig:
    """Validate already-parsed config data."""
    if not isinstance(data, dict):
        raise ConfigError("", f"the config must be a table/mapping, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise config_error(err) from err


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML (``.toml``) or YAML (``.yaml``/``.yml``) run config.

    Raises:
        ConfigError: unreadable file, syntax error, or invalid field (named).
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError("", f"{source}: use a .toml, .yaml or .yml file (got {suffix!r})")
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError("", f"{source}: no such file") from err
    except OSError as err:
        raise ConfigError("", f"{source}: cannot read ({err.strerror})") from err
    if suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError("", f"{source}: invalid TOML: {err}") from err
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            problem = str(err).replace("\n", " ")
            raise ConfigError("", f"{source}: invalid YAML: {problem}") from err
    return parse_config(data)
