"""``code.run_python``: a tool that runs Python in the sandbox and reports the outcome.

The sandbox is built on first use (probing the host once), so importing this module
never fails; on a host that cannot confine code the call fails with the
:class:`~llmagentos.exceptions.SandboxUnavailable` message, as a failed tool result.
"""

from __future__ import annotations

import threading
from typing import Any

from llmagentos.sandbox import Sandbox, SandboxLimits
from llmagentos.tools.base import tool

__all__ = ["run_python", "sandbox"]

_lock = threading.Lock()
_sandboxes: dict[str, Sandbox] = {}


def sandbox() -> Sandbox:
    """The shared default :class:`Sandbox` of the tool (default limits, auto backend)."""
    with _lock:
        if "default" not in _sandboxes:
            _sandboxes["default"] = Sandbox(SandboxLimits(), backend="auto")
        return _sandboxes["default"]


@tool(namespace="code")
async def run_python(
    code: str,
    stdin: str | None = None,
    files: dict[str, str] | None = None,
    timeout_seconds: float = 10.0,
) -> dict[str, Any]:
    """Run a Python 3 program (standard library only, no network) in a sandbox.

    Returns stdout, stderr, exit_code, ok, timed_out, killed_by (which limit stopped
    it, if any), seconds and truncated.

    Args:
        code: the complete program; print what you want to see.
        stdin: text given to the program's standard input.
        files: extra files for the working directory, by relative path.
        timeout_seconds: wall-clock limit, at most the sandbox's own (10 s default).
    """
    box = sandbox()
    wall = min(max(timeout_seconds, 0.1), box.limits.wall_seconds)
    limits = SandboxLimits(**{**vars(box.limits), "wall_seconds": wall})
    result = await box.arun_python(code, files=files, stdin=stdin, limits=limits)
    return result.to_dict()
