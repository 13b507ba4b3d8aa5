"""Per-agent tool permissions: which tools an agent may call, and which need approval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from llmagentos.exceptions import ConfigError

__all__ = ["ToolPolicy"]


def _patterns(field: str, value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(field, f"expected a list of name patterns, got the string {value!r}")
    patterns = tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(field, f"patterns must be non-empty strings (got {pattern!r})")
    return patterns


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """Glob patterns over qualified tool names (``files.*``, ``web.fetch``).

    A call is permitted when a name matches ``allow`` and no ``deny`` pattern (deny
    wins). A permitted call matching ``approve`` waits for a human decision.

    Example::

        ToolPolicy(allow=["files.*", "web.*"], deny=["files.write_file"], approve=["web.*"])
    """

    allow: Sequence[str] = ("*",)
    deny: Sequence[str] = ()
    approve: Sequence[str] = ()

    def __post_init__(self) -> None:
        for field in ("allow", "deny", "approve"):
            object.__setattr__(self, field, _patterns(field, getattr(self, field)))

    def refusal(self, name: str) -> str | None:
        """Why ``name`` may not be called, or ``None`` when it may."""
        for pattern in self.deny:
            if fnmatchcase(name, pattern):
                return f"tool {name!r} is denied by the policy (pattern {pattern!r})"
        if not any(fnmatchcase(name, pattern) for pattern in self.allow):
            return f"tool {name!r} is not in the allowed tools ({', '.join(self.allow) or 'none'})"
        return None

    def needs_approval(self, name: str) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in self.approve)
