"""CodeTaskEnv: write a function, run its tests in the sandbox, read the failures, repeat.

A Gymnasium-shaped environment for one :class:`~llmagentos.codegen.tasks.CodeTask` at a
time. The action is the code text; a step runs the task's tests on it in a
:class:`~llmagentos.sandbox.Sandbox`. The observation is a JSON-able dict with what a
coder needs for the next attempt: the task, the last attempt's code and the test
feedback. The reward is the pass rate; the episode terminates when every test passes and
is truncated after ``1 + repairs`` attempts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium

from llmagentos.codegen.tasks import CodeTask
from llmagentos.exceptions import ConfigError, EnvError

if TYPE_CHECKING:
    from llmagentos.sandbox import Sandbox, TestReport

__all__ = ["CodeSpace", "CodeTaskEnv", "default_sandbox", "report_to_dict"]

FEEDBACK_CHARS = 1500


class CodeSpace(gymnasium.spaces.Space[str]):
    """Any Python source text up to ``max_chars`` characters (an action of CodeTaskEnv)."""

    def __init__(self, max_chars: int = 50_000) -> None:
        super().__init__(shape=None, dtype=None)
        self.max_chars = max_chars

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_chars

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        return "def f():\n    return None\n"

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"CodeSpace(max_chars={self.max_chars})"


class _ObservationSpace(gymnasium.spaces.Space[dict[str, Any]]):
    """The observation: a dict with the keys :meth:`CodeTaskEnv.observation` fills in."""

    def __init__(self) -> None:
        super().__init__(shape=None, dtype=None)

    def contains(self, x: Any) -> bool:
        return isinstance(x, dict) and "prompt" in x and "attempt" in x

    def __repr__(self) -> str:
        return "CodeObservationSpace()"


def report_to_dict(report: TestReport, *, feedback_chars: int = FEEDBACK_CHARS) -> dict[str, Any]:
    """A test report as JSON-able data (the ``report`` entry of the step's info)."""
    result = report.result
    return {
        "passed": report.passed,
        "failed": report.failed,
        "total": report.total,
        "pass_rate": report.pass_rate,
        "error": report.error,
        "outcomes": [
            {"name": o.name, "passed": o.passed, "message": o.message} for o in report.outcomes
        ],
        "feedback": report.feedback(max_chars=feedback_chars),
        "seconds": getattr(result, "seconds", None),
        "timed_out": getattr(result, "timed_out", None),
    }


def default_sandbox() -> Sandbox:
    """The sandbox the code tasks run in: 5 s of CPU, 10 s of wall time, 256 MB."""
    from llmagentos.sandbox import Sandbox, SandboxLimits

    return Sandbox(
        limits=SandboxLimits(cpu_seconds=5.0, wall_seconds=10.0, memory_mb=256), backend="auto"
    )


class CodeTaskEnv(gymnasium.Env[dict[str, Any], str]):
    """Write the function of a code task; each step runs its tests in the sandbox.

    Args:
        task: the task (change it between episodes with :attr:`task` or
            ``reset(options={"task": task})``).
        repairs: attempts allowed after the first one before the episode is truncated.
        sandbox: where the tests run (default: :func:`default_sandbox`, made on first use).
        feedback_chars: the longest failure text put in the observation.

    Observations are dicts: ``task_id``, ``entry_point``, ``prompt``, ``signature``,
    ``attempt`` (attempts made), ``attempts_left``, ``code`` (the last attempt or
    ``None``), ``feedback`` (its failure text or ``None``), ``passed``, ``failed``,
    ``total``. The step's info has ``report`` (see :func:`report_to_dict`),
    ``is_success``, ``attempt`` and ``task_id``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's own name

    def __init__(
        self,
        task: CodeTask,
        *,
        repairs: int = 2,
        sandbox: Sandbox | None = None,
        feedback_chars: int = FEEDBACK_CHARS,
    ) -> None:
        if repairs < 0:
            raise ConfigError("repairs", f"must be >= 0 (got {repairs})")
        self.task = task
        self.repairs = repairs
        self.feedback_chars = feedback_chars
        self._sandbox = sandbox
        self.action_space = CodeSpace()
        self.observation_space = _ObservationSpace()
        self.attempts = 0
        self.last_code: str | None = None
        self.last_report: dict[str, Any] | None = None

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = default_sandbox()
        return self._sandbox

    @property
    def max_attempts(self) -> int:
        return 1 + self.repairs

    def observation(self) -> dict[str, Any]:
        """What the coder sees now."""
        task, report = self.task, self.last_report
        return {
            "task_id": task.id,
            "entry_point": task.entry_point,
            "prompt": task.prompt,
            "signature": task.signature,
            "attempt": self.attempts,
            "attempts_left": self.max_attempts - self.attempts,
            "code": self.last_code,
            "feedback": None if report is None else report["feedback"],
            "passed": None if report is None else report["passed"],
            "failed": None if report is None else report["failed"],
            "total": None if report is None else report["total"],
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        if options and "task" in options:
            task = options["task"]
            if not isinstance(task, CodeTask):
                raise EnvError(f"options['task'] must be a CodeTask, got {type(task).__name__}")
            self.task = task
        self.attempts = 0
        self.last_code = None
        self.last_report = None
        return self.observation(), {"task_id": self.task.id}

    def step(self, action: str) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self.attempts >= self.max_attempts:
            raise EnvError(
                f"{self.task.id}: all {self.max_attempts} attempts are used; call reset()"
            )
        report = self.sandbox.run_tests(action, self.task.tests)
        data = report_to_dict(report, feedback_chars=self.feedback_chars)
        self.attempts += 1
        self.last_code, self.last_report = action, data
        solved = data["error"] is None and data["total"] > 0 and data["failed"] == 0
        truncated = not solved and self.attempts >= self.max_attempts
        info = {
            "report": data,
            "is_success": solved,
            "attempt": self.attempts - 1,
            "task_id": self.task.id,
        }
        return self.observation(), float(data["pass_rate"]), solved, truncated, info

    def __repr__(self) -> str:
        return f"CodeTaskEnv(task={self.task.id!r}, repairs={self.repairs})"
