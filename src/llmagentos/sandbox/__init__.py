"""A code-execution sandbox for code-generation agents.

Untrusted Python runs in a separate process under bubblewrap (or, failing that,
``unshare``): no network, a private read-only root, fresh in-memory working directory
and ``/tmp``, a clean environment, a cgroup per run for memory (shared memory
included), processes and CPU, file limits and a wall-clock timeout. If the host cannot
confine code, :class:`Sandbox` raises :class:`~llmagentos.exceptions.SandboxUnavailable`
and runs nothing.

Example::

    sandbox = Sandbox(SandboxLimits(cpu_seconds=2, wall_seconds=5))
    result = sandbox.run_python("print(sum(range(10)))")
    report = sandbox.run_tests(solution, tests)
    prompt_part = report.feedback(max_chars=1500)
"""

from llmagentos.exceptions import ConfinementUnavailable, SandboxError, SandboxUnavailable
from llmagentos.sandbox.limits import SandboxLimits
from llmagentos.sandbox.report import TestOutcome, TestReport
from llmagentos.sandbox.result import SandboxResult
from llmagentos.sandbox.sandbox import Sandbox

__all__ = [
    "ConfinementUnavailable",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailable",
    "TestOutcome",
    "TestReport",
]
