"""Test results of a candidate solution, read from the in-sandbox runner's messages."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any

from llmagentos.sandbox.result import SandboxResult

__all__ = ["TestOutcome", "TestReport", "parse_report", "test_names"]


@dataclass(frozen=True)
class TestOutcome:
    """One test function: did it pass, and if not, why (exception text and location)."""

    name: str
    passed: bool
    message: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class TestReport:
    """All tests of one run.

    Attributes:
        passed, failed, total: counts (``total == passed + failed``).
        pass_rate: ``passed / total`` (0 when there are no tests).
        outcomes: one per test, in definition order.
        error: why the run as a whole failed (the solution does not import, the run
            timed out, the report looks forged), or ``None``; tests that did not run
            count as failed.
        result: the sandbox run itself (stdout and stderr of the candidate).
    """

    __test__ = False  # not a pytest test class despite the name

    outcomes: list[TestOutcome]
    error: str | None
    result: SandboxResult
    passed: int = field(init=False)
    failed: int = field(init=False)
    total: int = field(init=False)
    pass_rate: float = field(init=False)

    def __post_init__(self) -> None:
        passed = sum(outcome.passed for outcome in self.outcomes)
        total = len(self.outcomes)
        object.__setattr__(self, "passed", passed)
        object.__setattr__(self, "failed", total - passed)
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "pass_rate", passed / total if total else 0.0)

    @property
    def ok(self) -> bool:
        """Every test ran and passed, and there was at least one."""
        return self.error is None and self.total > 0 and self.failed == 0

    def feedback(self, max_chars: int = 1500) -> str:
        """The failures as concise text for a model to repair the solution from."""
        lines = [f"{self.passed}/{self.total} tests passed."]
        if self.error:
            lines.append(f"Error: {self.error}")
        lines += [f"- {o.name}: {o.message}" for o in self.outcomes if not o.passed]
        if self.error and self.result.stderr.strip():
            lines.append("stderr (end):\n" + self.result.stderr.strip()[-400:])
        text = "\n".join(lines)
        return text if len(text) <= max_chars else text[: max_chars - 4] + " ..."

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data."""
        return {
            "passed": self.passed,
            "failed": self.failed,
            "total": self.total,
            "pass_rate": self.pass_rate,
            "error": self.error,
            "outcomes": [vars(outcome) for outcome in self.outcomes],
            "result": self.result.to_dict(),
        }


def test_names(tests: str) -> list[str]:
    """Module-level ``test*`` functions of the test source ([] if it does not parse)."""
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError):
        return []
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    ]


def _messages(raw: bytes, nonce: str) -> list[dict[str, Any]]:
    found = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        head, _, body = line.partition(" ")
        if head != nonce:
            continue
        try:
            message = json.loads(body)
        except ValueError:
            continue
        if isinstance(message, dict):
            found.append(message)
    return found


def _stopped(result: SandboxResult) -> str:
    if result.killed_by:
        return f"stopped by {result.killed_by} after {result.seconds:.1f} s"
    return f"exited with status {result.exit_code}"


def parse_report(raw: bytes, nonce: str, tests: str, result: SandboxResult) -> TestReport:
    """A :class:`TestReport` from the runner's messages, cross-checked against the tests.

    Anything inconsistent (two plans, an outcome for a test not planned, a test
    defined in the source but missing from the plan, a duplicate outcome) means the
    candidate tampered with the channel: every test then counts as failed.
    """
    expected = test_names(tests)
    plan: list[str] | None = None
    results: dict[str, TestOutcome] = {}
    error: str | None = None
    done = False
    problems: list[str] = []
    for message in _messages(raw, nonce):
        if "tests" in message:
            if plan is not None:
                problems.append("two test plans")
            plan = [str(name) for name in message["tests"]]
        elif "outcome" in message:
            item = message["outcome"]
            name = str(item.get("name"))
            if plan is None or name not in plan or name in results:
                problems.append(f"unexpected outcome for {name!r}")
                continue
            results[name] = TestOutcome(
                name=name,
                passed=item.get("passed") is True,
                message=str(item.get("message", "")),
                seconds=float(item.get("seconds", 0.0)),
            )
        elif "error" in message:
            error = str(message["error"])
        elif message.get("done") is True:
            if done:
                problems.append("two end markers")
            done = True
    if plan is not None and set(expected) - set(plan):
        problems.append(f"tests missing from the plan: {sorted(set(expected) - set(plan))}")
    if done and plan is not None and set(plan) != set(results):
        problems.append("end marker before every planned test reported")
    names = [*plan, *(n for n in expected if n not in plan)] if plan is not None else expected
    if problems:
        error = "test report inconsistent, possibly forged by the solution: " + "; ".join(problems)
        outcomes = [TestOutcome(name, False, "not counted: " + error) for name in names]
        return TestReport(outcomes=outcomes, error=error, result=result)
    if error is None and result.timed_out:
        error = f"test run {_stopped(result)}"
    elif error is None and not done:
        error = f"test run ended early: {_stopped(result)}"
    outcomes = []
    for name in names:
        outcome = results.get(name)
        if error is None and outcome is not None:
            outcomes.append(outcome)
        elif outcome is not None and outcome.passed:
            note = f"passed, but not counted: {error}"
            outcomes.append(TestOutcome(name, False, note[:600], outcome.seconds))
        elif outcome is not None:
            outcomes.append(outcome)
        else:
            outcomes.append(TestOutcome(name, False, f"not run: {error or 'no result'}"[:600]))
    return TestReport(outcomes=outcomes, error=error, result=result)
