"""Run the coder agent over a task set and score it: pass@1, pass@k, solved after r repairs.

Each task is one :meth:`Agent.run_episode` of the coder agent on a
:class:`~llmagentos.codegen.env.CodeTaskEnv`: perception passes the observation on,
the :class:`~llmagentos.codegen.planner.CoderPlanningModule` writes or repairs the
code, execution runs the tests in the sandbox (with
:class:`~llmagentos.modules.tool_feedback.ToolOutcomeFeedback`), and learning turns the
test report into a reward (:class:`~llmagentos.modules.tool_feedback.TestPassRateReward`,
recorded by an :class:`~llmagentos.modules.tool_feedback.OutcomeRecorder`).

Two passes per task:

* **greedy** (temperature 0): the first attempt gives pass@1 (greedy); the repairs give
  "solved after r repairs" for r = 0..k;
* **sampled** (temperature ~0.8, ``n`` samples, first attempts only): the unbiased
  pass@k estimator of Chen et al. (2021), ``1 - C(n-c, k) / C(n, k)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from llmagentos.agent import Agent
from llmagentos.codegen.env import CodeTaskEnv
from llmagentos.codegen.planner import CoderPlanningModule
from llmagentos.codegen.prompts import DEFAULT_VARIANT
from llmagentos.codegen.tasks import CodeTask
from llmagentos.exceptions import ConfigError
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.perception import PerceptionModule
from llmagentos.modules.tool_feedback import (
    OutcomeRecorder,
    TestPassRateReward,
    ToolOutcomeFeedback,
)
from llmagentos.types import StepRecord

if TYPE_CHECKING:
    from llmagentos.llm.base import Model
    from llmagentos.sandbox import Sandbox

__all__ = [
    "Attempt",
    "CodegenReport",
    "EpisodeRun",
    "TaskResult",
    "build_coder_agent",
    "evaluate",
    "pass_at_k",
    "solve",
]

Progress = Callable[[str, str], None]
"""Called after each episode with (task id, what happened: ``greedy`` or ``sample i``)."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from ``n`` samples of which ``c`` passed.

    ``1 - C(n - c, k) / C(n, k)`` (Chen et al., 2021): the chance that at least one of
    ``k`` samples drawn without replacement from the ``n`` passes.

    Raises:
        ValueError: unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@dataclass(slots=True)
class Attempt:
    """One submitted piece of code and what its tests said."""

    index: int
    reason: str
    code: str
    passed: int
    failed: int
    total: int
    pass_rate: float
    error: str | None
    reward: float
    feedback: str

    @property
    def solved(self) -> bool:
        return self.error is None and self.total > 0 and self.failed == 0


@dataclass(slots=True)
class EpisodeRun:
    """One episode on one task: the attempts, in order."""

    task_id: str
    seed: int | None
    attempts: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def solved_at(self) -> int | None:
        """The attempt that passed every test (0: the first, r: after r repairs)."""
        return next((a.index for a in self.attempts if a.solved), None)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "solved_at": self.solved_at}


@dataclass(slots=True)
class TaskResult:
    """A task's greedy episode (with repairs) and its sampled first attempts."""

    task_id: str
    greedy: EpisodeRun
    samples: list[EpisodeRun] = field(default_factory=list)

    @property
    def sample_passes(self) -> int:
        return sum(1 for s in self.samples if s.solved_at == 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "greedy": self.greedy.to_dict(),
            "samples": [s.to_dict() for s in self.samples],
            "sample_passes": self.sample_passes,
        }


@dataclass(slots=True)
class CodegenReport:
    """The scores of one evaluation, and every attempt behind them."""

    model: str
    variant: str
    repairs: int
    samples: int
    temperature: float
    tasks: list[TaskResult] = field(default_factory=list)
    seconds: float = 0.0

    def solved_after(self, repairs: int) -> float:
        """Fraction of tasks whose greedy episode passed within ``repairs`` repairs."""
        if not self.tasks:
            return 0.0
        solved = sum(
            1
            for t in self.tasks
            if t.greedy.solved_at is not None and t.greedy.solved_at <= repairs
        )
        return solved / len(self.tasks)

    @property
    def pass_at_1_greedy(self) -> float:
        return self.solved_after(0)

    def pass_at(self, k: int) -> float | None:
        """Mean unbiased pass@k over the tasks (``None`` without ``k`` samples each)."""
        if not self.tasks or self.samples < k or k < 1:
            return None
        return sum(pass_at_k(self.samples, t.sample_passes, k) for t in self.tasks) / len(
            self.tasks
        )

    @property
    def mean_first_pass_rate(self) -> float:
        """Mean fraction of tests the greedy first attempts passed."""
        rates = [t.greedy.attempts[0].pass_rate for t in self.tasks if t.greedy.attempts]
        return sum(rates) / len(rates) if rates else 0.0

    def summary(self) -> dict[str, Any]:
        ks = sorted({1, self.samples}) if self.samples else []
        return {
            "tasks": len(self.tasks),
            "pass@1 (greedy)": self.pass_at_1_greedy,
            "solved after r repairs": {
                str(r): self.solved_after(r) for r in range(self.repairs + 1)
            },
            "pass@k (sampled)": {str(k): self.pass_at(k) for k in ks},
            "mean first-attempt test pass rate": self.mean_first_pass_rate,
            "seconds": self.seconds,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "repairs": self.repairs,
            "samples": self.samples,
            "temperature": self.temperature,
            "summary": self.summary(),
            "tasks": [t.to_dict() for t in self.tasks],
        }


def build_coder_agent(
    model: Model,
    env: CodeTaskEnv,
    *,
    variant: str = DEFAULT_VARIANT,
    temperature: float = 0.0,
    seed: int | None = None,
    max_tokens: int = 384,
    resample: int = 2,
    name: str = "coder",
) -> Agent:
    """The coder agent: identity perception, LLM coder, sandboxed tests, pass-rate reward."""
    return Agent(
        PerceptionModule(),
        CoderPlanningModule(
            model,
            variant=variant,
            temperature=temperature,
            seed=seed,
            max_tokens=max_tokens,
            resample=resample,
        ),
        ExecutionModule(env, feedback=ToolOutcomeFeedback()),
        LearningModule(OutcomeRecorder(keep=0), reward_fn=TestPassRateReward()),
        name=name,
    )


def _attempt(record: StepRecord) -> Attempt:
    report = record.info.get("report") or {}
    return Attempt(
        index=int(record.info.get("attempt", record.step)),
        reason=record.reason or "",
        code=str(record.action),
        passed=int(report.get("passed", 0)),
        failed=int(report.get("failed", 0)),
        total=int(report.get("total", 0)),
        pass_rate=float(report.get("pass_rate", 0.0)),
        error=report.get("error"),
        reward=record.reward,
        feedback=str(report.get("feedback") or ""),
    )


def solve(agent: Agent, task: CodeTask, *, seed: int | None = None) -> EpisodeRun:
    """Run one episode of ``agent`` (built by :func:`build_coder_agent`) on ``task``."""
    env = agent.execution_module.env
    if not isinstance(env, CodeTaskEnv):
        raise ConfigError("agent", "the agent's execution module must act in a CodeTaskEnv")
    env.task = task
    run = EpisodeRun(task.id, seed)

    def listen(record: StepRecord) -> None:
        run.attempts.append(_attempt(record))

    agent.listeners.append(listen)
    try:
        run.seconds = agent.run_episode(seed=seed).seconds
    finally:
        agent.listeners.remove(listen)
    return run


def evaluate(
    tasks: Sequence[CodeTask],
    model: Model,
    *,
    repairs: int = 2,
    samples: int = 0,
    temperature: float = 0.8,
    variant: str = DEFAULT_VARIANT,
    sandbox: Sandbox | None = None,
    max_tokens: int = 384,
    resample: int = 2,
    model_name: str | None = None,
    progress: Progress | None = None,
) -> CodegenReport:
    """Score the coder on ``tasks``: a greedy episode with ``repairs`` each, then
    ``samples`` sampled first attempts at ``temperature``. ``resample`` bounds the
    retries of a repair that repeats an earlier attempt (see CoderPlanningModule).
    """
    if not tasks:
        raise ConfigError("tasks", "no tasks to evaluate")
    if repairs < 0 or samples < 0:
        raise ConfigError("repairs", "repairs and samples must be >= 0")
    started = time.perf_counter()
    report = CodegenReport(
        model=model_name or str(getattr(model, "model_id", type(model).__name__)),
        variant=variant,
        repairs=repairs,
        samples=samples,
        temperature=temperature,
    )
    greedy_env = CodeTaskEnv(tasks[0], repairs=repairs, sandbox=sandbox)
    sandbox = greedy_env.sandbox  # one sandbox for both passes
    greedy = build_coder_agent(
        model, greedy_env, variant=variant, max_tokens=max_tokens, resample=resample
    )
    sampler = None
    if samples:
        sample_env = CodeTaskEnv(tasks[0], repairs=0, sandbox=sandbox)
        sampler = build_coder_agent(
            model,
            sample_env,
            variant=variant,
            temperature=temperature,
            seed=0,
            max_tokens=max_tokens,
            name="sampler",
        )
    for task in tasks:
        result = TaskResult(task.id, solve(greedy, task, seed=0))
        if progress is not None:
            progress(task.id, "greedy")
        if sampler is not None:
            for index in range(samples):
                result.samples.append(solve(sampler, task, seed=index))
                if progress is not None:
                    progress(task.id, f"sample {index + 1}")
        report.tasks.append(result)
    report.seconds = time.perf_counter() - started
    return report
