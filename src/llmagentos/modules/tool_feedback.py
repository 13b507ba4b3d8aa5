"""Feedback and rewards for tool-using agents: tool results and test reports.

An environment (or executor) whose steps call tools reports what happened in the
outcome's ``info``:

* ``info["report"]``: a test report (a sandbox ``TestReport`` or its dict form with
  ``passed``, ``failed``, ``total``, ``pass_rate``, ``error``, ``outcomes``);
* ``info["tool_results"]`` (a list) or ``info["tool_result"]`` (one): tool call results
  (:class:`~llmagentos.tools.ToolResult` or dicts with ``ok``, ``error``, ``name``).

:class:`ToolOutcomeFeedback` (an execution-module feedback collector) turns these into
one structured ``info["feedback"]`` entry; :class:`TestPassRateReward` and
:class:`ToolSuccessReward` (learning-module reward functions) turn them into rewards;
:class:`OutcomeRecorder` is a policy optimizer that only records what it was given,
for agents (an LLM coder) whose policy does not learn but whose rewards should still
flow through the learning module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmagentos.exceptions import ConfigError
from llmagentos.modules.base import Component
from llmagentos.types import Action, Outcome, Transition

__all__ = [
    "OutcomeRecorder",
    "TestPassRateReward",
    "ToolOutcomeFeedback",
    "ToolSuccessReward",
    "read_test_report",
    "read_tool_results",
]

_FAILURE_CHARS = 300


def _get(value: Any, name: str, default: Any = None) -> Any:
    if isinstance(value, Mapping):
        return value.get(name, default)
    return getattr(value, name, default)


def read_test_report(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The test report in ``info["report"]`` as a plain dict, or ``None`` if there is none.

    Accepts the sandbox's ``TestReport`` object or its dict form. The result has
    ``passed``, ``failed``, ``total``, ``pass_rate`` (0..1), ``error`` and
    ``failures`` (``{"name", "message"}`` of each failed test).
    """
    report = info.get("report")
    if report is None or _get(report, "total") is None:
        return None
    total = int(_get(report, "total", 0))
    passed = int(_get(report, "passed", 0))
    failed = int(_get(report, "failed", total - passed))
    rate = _get(report, "pass_rate")
    pass_rate = float(rate) if rate is not None else (passed / total if total else 0.0)
    failures = [
        {"name": str(_get(o, "name", "")), "message": str(_get(o, "message", ""))[:_FAILURE_CHARS]}
        for o in _get(report, "outcomes", None) or ()
        if not _get(o, "passed", False)
    ]
    error = _get(report, "error")
    return {
        "passed": passed,
        "failed": failed,
        "total": total,
        "pass_rate": pass_rate,
        "error": None if error is None else str(error),
        "failures": failures,
    }


def read_tool_results(outcome_info: Mapping[str, Any], observation: Any = None) -> list[Any]:
    """The tool results of a step: ``info["tool_results"]``, ``info["tool_result"]``, or
    the observation itself when it is a tool result."""
    results = outcome_info.get("tool_results")
    if results is not None:
        return list(results)
    one = outcome_info.get("tool_result")
    if one is not None:
        return [one]
    if observation is not None and _is_tool_result(observation):
        return [observation]
    return []


def _is_tool_result(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "ok" in value and ("value" in value or "error" in value)
    return hasattr(value, "ok") and hasattr(value, "error")


def _all_passed(report: Mapping[str, Any]) -> bool:
    total, failed = report["total"], report["failed"]
    return report["error"] is None and total > 0 and failed == 0 == total - report["passed"]


class ToolOutcomeFeedback(Component):
    """Adds a structured ``info["feedback"]`` to each outcome that carries tool outcomes.

    For a test report: ``{"kind": "tests", "ok", "passed", "failed", "total",
    "pass_rate", "error", "failures", "text"}``; for tool results: ``{"kind": "tools",
    "ok", "calls", "errors", "failures", "text"}`` (``failures`` names each failed call
    and its error). ``text`` is one line a model or a log can read. Outcomes with
    neither pass on unchanged; the original info is never modified in place.

    Attributes:
        steps, tool_calls, tool_errors, test_runs, test_passes: running counts.
    """

    def __init__(self) -> None:
        self.steps = self.tool_calls = self.tool_errors = 0
        self.test_runs = self.test_passes = 0

    def collect(self, action: Action, outcome: Outcome) -> Outcome:
        self.steps += 1
        info = outcome.info if isinstance(outcome.info, Mapping) else {}
        report = read_test_report(info)
        if report is not None:
            feedback = self._tests(report)
        else:
            results = read_tool_results(info, outcome.observation)
            if not results:
                return outcome
            feedback = self._tools(results)
        return Outcome(
            outcome.observation,
            outcome.reward,
            outcome.terminated,
            outcome.truncated,
            {**info, "feedback": feedback},
        )

    def _tests(self, report: dict[str, Any]) -> dict[str, Any]:
        self.test_runs += 1
        ok = _all_passed(report)
        self.test_passes += ok
        if report["error"] is not None:
            text = f"tests could not run: {report['error']}"
        elif ok:
            text = f"all {report['total']} tests passed"
        else:
            names = ", ".join(f["name"] for f in report["failures"][:3])
            text = f"{report['failed']}/{report['total']} tests failed" + (
                f": {names}" if names else ""
            )
        return {"kind": "tests", "ok": ok, **report, "text": " ".join(text.split())}

    def _tools(self, results: list[Any]) -> dict[str, Any]:
        failures = [
            {"name": str(_get(r, "name", "") or "tool"), "error": str(_get(r, "error", ""))}
            for r in results
            if not _get(r, "ok", False)
        ]
        self.tool_calls += len(results)
        self.tool_errors += len(failures)
        ok = not failures
        text = (
            f"{len(results)} tool call(s) succeeded"
            if ok
            else f"{len(failures)} of {len(results)} tool call(s) failed: "
            + "; ".join(f"{f['name']}: {f['error'][:120]}" for f in failures[:3])
        )
        return {
            "kind": "tools",
            "ok": ok,
            "calls": len(results),
            "errors": len(failures),
            "failures": failures,
            "text": " ".join(text.split()),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
            "test_runs": self.test_runs,
            "test_passes": self.test_passes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("steps", "tool_calls", "tool_errors", "test_runs", "test_passes"):
            setattr(self, name, int(state.get(name, 0)))


class TestPassRateReward(Component):
    """Reward from the test report in ``info["report"]``.

    ``reward = rate_weight * pass_rate + improvement_weight * (pass_rate - previous)
    + all_pass_bonus * [every test passed] + error_penalty * [the tests could not run]``,
    where ``previous`` is the pass rate of the previous attempt in the episode (0 before
    the first). Transitions without a report keep the environment's reward. The pass
    rate is ``passed / total`` of the report (the sandbox's verdict, decided out of
    the candidate's reach and counting only the task's own tests; see
    docs/sandbox.md); counts that do not add up score 0.

    Args:
        rate_weight: weight of the pass rate itself.
        improvement_weight: weight of the improvement over the previous attempt.
        all_pass_bonus: added when every test passes.
        error_penalty: added (use a negative value) when the code did not even load.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        *,
        rate_weight: float = 1.0,
        improvement_weight: float = 0.0,
        all_pass_bonus: float = 0.0,
        error_penalty: float = 0.0,
    ) -> None:
        self.rate_weight = rate_weight
        self.improvement_weight = improvement_weight
        self.all_pass_bonus = all_pass_bonus
        self.error_penalty = error_penalty
        self.previous = 0.0

    def reset(self, *, seed: int | None = None) -> None:
        self.previous = 0.0

    def reward(self, transition: Transition) -> float:
        report = read_test_report(transition.info) if isinstance(transition.info, Mapping) else None
        if report is None:
            return transition.reward
        # The counts of the harness's own outcomes, not a rate someone wrote down: a
        # report whose numbers disagree scores nothing.
        passed, total = report["passed"], report["total"]
        consistent = 0 <= passed <= total and report["failed"] == total - passed
        rate = passed / total if consistent and total > 0 else 0.0
        value = self.rate_weight * rate + self.improvement_weight * (rate - self.previous)
        if _all_passed(report):
            value += self.all_pass_bonus
        if report["error"] is not None:
            value += self.error_penalty
        self.previous = rate
        if transition.done:
            self.previous = 0.0
        return value


class ToolSuccessReward(Component):
    """``success`` for each tool call that worked, ``penalty`` for each that failed.

    Reads ``info["tool_results"]``/``info["tool_result"]`` (or a tool-result
    observation). A step with no tool call gets ``no_call`` (``None``: keep the
    environment's reward).
    """

    def __init__(
        self, *, success: float = 1.0, penalty: float = -1.0, no_call: float | None = 0.0
    ) -> None:
        self.success = success
        self.penalty = penalty
        self.no_call = no_call

    def reward(self, transition: Transition) -> float:
        info = transition.info if isinstance(transition.info, Mapping) else {}
        results = read_tool_results(info, transition.next_observation)
        if not results:
            return transition.reward if self.no_call is None else self.no_call
        ok = sum(1 for r in results if _get(r, "ok", False))
        return ok * self.success + (len(results) - ok) * self.penalty


class OutcomeRecorder(Component):
    """A policy optimizer that learns nothing and records every reward it is given.

    For agents whose policy is fixed (a prompted LLM) but whose rewards should still go
    through the learning module, to be reported, traced or compared.

    Args:
        keep: how many recent rewards to keep in :attr:`rewards` (0: none, only totals).
    """

    def __init__(self, *, keep: int = 10_000) -> None:
        if keep < 0:
            raise ConfigError("keep", f"must be >= 0 (got {keep})")
        self.keep = keep
        self.rewards: list[float] = []
        self.updates = 0
        self.total = 0.0

    def update(self, transition: Transition) -> dict[str, Any]:
        reward = float(transition.reward)
        self.updates += 1
        self.total += reward
        if self.keep:
            self.rewards.append(reward)
            if len(self.rewards) > self.keep:
                del self.rewards[: len(self.rewards) - self.keep]
        return {"reward": reward, "mean_reward": self.total / self.updates}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        self.total = float(state.get("total", 0.0))
