"""What cannot be sent to Ray, found before anything is sent.

Ray ships objects with cloudpickle. A module holding a lock, an open file, a database
connection or a loaded model cannot go; :func:`check_serializable` finds the first
attribute path that will not pickle, so the error names it (``planning.model._lock``)
instead of Ray's traceback from deep inside a worker.

One thing goes by reference: an agent's handle on the process kernel (what a planner
built from a model id holds) is sent as its model id, agent and limits, and made again
on arrival (:func:`~llmagentos.kernel.default.scheduled_handle`): on a worker that uses
the cluster's kernel, a handle on it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from llmagentos.exceptions import LLMAgentOSError
from llmagentos.kernel.default import is_process_kernel, scheduled_handle
from llmagentos.kernel.handle import ScheduledModel

__all__ = ["NotSerializable", "check_serializable", "dumps"]

_MAX_DEPTH = 6


class NotSerializable(LLMAgentOSError, TypeError):
    """``what`` cannot be sent to Ray: the value at ``path`` would not pickle."""

    def __init__(self, what: str, path: str, reason: str) -> None:
        self.what, self.path, self.reason = what, path, reason
        super().__init__(
            f"{what} cannot be sent to Ray: {path} would not pickle ({reason}); build it "
            "on the worker (a factory) or leave it out"
        )


def _handle_again(
    model: str, agent: str, priority: int, weight: float, token_budget: int | None
) -> Any:
    return scheduled_handle(
        model, agent=agent, priority=priority, weight=weight, token_budget=token_budget
    )


def _pickler_class() -> type:
    import cloudpickle  # Ray's dependency

    class KernelAwarePickler(cloudpickle.CloudPickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is ScheduledModel and is_process_kernel(obj.scheduler):
                budget = obj._agent.token_budget
                return _handle_again, (obj.backend, obj.agent, obj.priority, obj.weight, budget)
            return super().reducer_override(obj)

    return KernelAwarePickler


_PICKLER: list[type] = []


def dumps(value: Any) -> bytes:
    """``value`` pickled the way Ray pickles it, kernel handles by reference."""
    if not _PICKLER:
        _PICKLER.append(_pickler_class())
    buffer = io.BytesIO()
    _PICKLER[0](buffer, protocol=5).dump(value)
    return buffer.getvalue()


def _children(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [(f"[{key!r}]", item) for key, item in value.items()]
    if isinstance(value, list | tuple | set | frozenset):
        return [(f"[{i}]", item) for i, item in enumerate(value)]
    state = getattr(value, "__dict__", None)
    found = [(f".{key}", item) for key, item in state.items()] if isinstance(state, dict) else []
    for slot in getattr(type(value), "__slots__", ()):
        if isinstance(slot, str) and hasattr(value, slot):
            found.append((f".{slot}", getattr(value, slot)))
    return found


def _culprit(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    """The deepest path under ``value`` that will not pickle, with the reason."""
    try:
        dumps(value)
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
    else:
        return None
    if depth < _MAX_DEPTH:
        for suffix, child in _children(value):
            deeper = _culprit(child, path + suffix, depth + 1)
            if deeper is not None:
                return deeper
    return path, reason


def check_serializable(value: Any, what: str, *, path: str | None = None) -> bytes:
    """Pickle ``value`` for Ray; on failure raise :class:`NotSerializable` naming the
    attribute that would not pickle (``path`` names ``value`` itself in the message)."""
    try:
        return dumps(value)
    except Exception:
        found = _culprit(value, path or what, 0)
        where, reason = found if found is not None else (path or what, "unknown")
        raise NotSerializable(what, where, reason) from None
