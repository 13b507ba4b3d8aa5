"""The llmagentos exception hierarchy.

Every error the library raises on purpose derives from :class:`LLMAgentOSError`::

    LLMAgentOSError
    ├── ConfigError            bad configuration: names the field and the problem
    ├── RegistryError          unknown registry name: lists the close matches
    │   (also a LookupError)
    ├── ModuleError            a module failed or broke its contract during a step
    │   ├── ActionError        an action outside the environment's action space
    │   └── ModuleOutputError  a module returned a value of the wrong shape
    ├── EnvError               an environment broke the Gymnasium contract
    ├── CheckError             ``check_module`` / ``check_env`` found a violation
    └── QTableError            a Q-table file cannot be read or does not fit

Exceptions carry their data as attributes and never log; foreign exceptions are
translated at the boundary with ``raise ... from err``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ActionError",
    "CheckError",
    "ConfigError",
    "EnvError",
    "LLMAgentOSError",
    "ModuleError",
    "ModuleOutputError",
    "QTableError",
    "RegistryError",
]


def _short(value: Any, limit: int = 80) -> str:
    """A repr short enough for a one-line error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class LLMAgentOSError(Exception):
    """Base class of every error llmagentos raises on purpose."""


class ConfigError(LLMAgentOSError, ValueError):
    """A configuration value is missing or invalid.

    Attributes:
        field: dotted path of the offending field (``agent.learning.alpha``), or ``""``.
        problem: what is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class RegistryError(LLMAgentOSError, LookupError):
    """A name is not registered; ``suggestions`` holds the close matches."""

    def __init__(self, kind: str, name: str, suggestions: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = list(suggestions)
        hint = (
            f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?"
            if self.suggestions
            else ""
        )
        super().__init__(f"unknown {kind} {name!r}{hint}")

    def __str__(self) -> str:  # LookupError would otherwise repr() the message
        return str(self.args[0])


class ModuleError(LLMAgentOSError):
    """A module raised or broke its contract while the agent ran it.

    Attributes:
        module: which module (``perception``, ``planning``, ``execution``, ``learning``).
        message: what went wrong.
        step: the step index within the episode (``None`` during reset or outside a run);
            the agent fills it in when the error passes through it.
        value: the offending input or output, when there is one.
    """

    def __init__(
        self,
        module: str,
        message: str,
        *,
        step: int | None = None,
        value: Any = None,
    ) -> None:
        self.module = module
        self.message = message
        self.step = step
        self.value = value
        super().__init__(module, message)

    def __str__(self) -> str:
        where = f"{self.module} module" + (f" at step {self.step}" if self.step is not None else "")
        return f"{where}: {self.message}"


class ActionError(ModuleError):
    """The planner chose an action the environment does not accept."""


class ModuleOutputError(ModuleError):
    """A module returned a value of the wrong shape or type."""


class EnvError(LLMAgentOSError):
    """An environment broke the Gymnasium ``reset``/``step`` contract."""


class CheckError(LLMAgentOSError, AssertionError):
    """A conformance check failed; ``target`` says what was being checked."""

    def __init__(self, target: str, message: str) -> None:
        self.target = target
        super().__init__(f"{target}: {message}")


class QTableError(LLMAgentOSError, ValueError):
    """A Q-table cannot be loaded, or does not fit the environment it is used with."""


def describe(value: Any) -> str:
    """Public helper for messages: a short repr with the type name."""
    return f"{_short(value)} ({type(value).__name__})"
