"""Results, inputs, capability refusal, the test runner and the run_python tool."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from llmagentos.exceptions import ConfigError, SandboxUnavailable
from llmagentos.sandbox import Sandbox, SandboxLimits, TestReport, probe
from llmagentos.tools import ToolRegistry

LIMITS = SandboxLimits(cpu_seconds=2, wall_seconds=5, output_bytes=1000)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    try:
        return Sandbox(LIMITS)
    except SandboxUnavailable as err:
        pytest.skip(f"no sandbox backend here: {err}")


def test_stdout_stderr_exit_code(sandbox: Sandbox) -> None:
    result = sandbox.run_python(
        "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)"
    )
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
    assert not result.ok
    assert result.killed_by is None
    assert not result.timed_out
    assert result.backend in ("bwrap", "unshare")
    assert result.to_dict()["ok"] is False


def test_exception_is_a_result(sandbox: Sandbox) -> None:
    result = sandbox.run_python("1 / 0")
    assert result.exit_code == 1
    assert "ZeroDivisionError" in result.stderr
    assert 'File "/sandbox/main.py", line 1' in result.stderr


def test_truncation(sandbox: Sandbox) -> None:
    result = sandbox.run_python("print('x' * 5000)")
    assert result.ok
    assert result.truncated
    assert result.stdout == "x" * 1000


def test_stdin_argv_files(sandbox: Sandbox) -> None:
    code = (
        "import sys\nfrom helpers.text import shout\n"
        "print(shout(input()), sys.argv[1:], open('data.txt').read())"
    )
    result = sandbox.run_python(
        code,
        stdin="hello\n",
        argv=["a", "b"],
        files={"helpers/text.py": "def shout(s): return s.upper()", "data.txt": "d"},
    )
    assert result.stdout == "HELLO ['a', 'b'] d\n", result.stderr


def test_unicode_and_workdir_is_fresh(sandbox: Sandbox) -> None:
    first = sandbox.run_python("open('left.txt', 'w').write('x'); print('é ✓')")
    assert first.stdout == "é ✓\n"
    second = sandbox.run_python("import os; print(sorted(os.listdir('.')))")
    assert second.stdout == "['main.py']\n"


@pytest.mark.parametrize("name", ["/etc/passwd", "../up.txt", "", "main.py"])
def test_bad_file_names_are_refused(sandbox: Sandbox, name: str) -> None:
    with pytest.raises(ConfigError):
        sandbox.run_python("pass", files={name: "x"})


async def test_async_runs_concurrently(sandbox: Sandbox) -> None:
    code = "import time; time.sleep(0.5); print('done')"
    results = await asyncio.gather(*(sandbox.arun_python(code) for _ in range(4)))
    assert all(r.stdout == "done\n" for r in results)
    assert max(r.seconds for r in results) < 3.0


async def test_cancellation_kills_the_run(sandbox: Sandbox) -> None:
    task = asyncio.ensure_future(sandbox.arun_python("import time; time.sleep(100)"))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Sandbox(backend="docker")


def test_refuses_without_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap anywhere on PATH
    probe.clear_cache()
    try:
        with pytest.raises(SandboxUnavailable) as info:
            Sandbox(backend="bwrap").run_python(f"open({str(marker)!r}, 'w')")
    finally:
        probe.clear_cache()
    assert "apt-get install bubblewrap" in str(info.value)
    assert "bwrap: not found" in str(info.value)
    assert not marker.exists()


def test_refuses_when_the_trial_run_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A bwrap that cannot create namespaces (as on hosts without user namespaces)."""
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    unshare = tmp_path / "unshare"
    unshare.write_text(
        "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n"
    )
    unshare.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.defpath}")
    probe.clear_cache()
    try:
        # As root the inner bwrap must live under /usr; skip the check for the fake.
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        with pytest.raises(SandboxUnavailable) as info:
            Sandbox(backend="auto")
    finally:
        probe.clear_cache()
    message = str(info.value)
    assert "No permissions to creating new namespace" in message
    assert "Operation not permitted" in message
    assert "refusing to run code unconfined" in message
    assert info.value.problems and len(info.value.problems) == 2


SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = (
    "from solution import *\n\n"
    "def test_small():\n    assert add(1, 2) == 3\n\n"
    "def test_negative():\n    assert add(-1, -2) == -3\n"
)


def test_run_tests_all_pass(sandbox: Sandbox) -> None:
    report = sandbox.run_tests(SOLUTION, TESTS)
    assert (report.passed, report.failed, report.total, report.pass_rate) == (2, 0, 2, 1.0)
    assert report.error is None
    assert report.ok
    assert report.feedback().startswith("2/2 tests passed.")


def test_run_tests_failures_explain_themselves(sandbox: Sandbox) -> None:
    solution = (
        "def add(a, b):\n    if a < 0:\n        raise ValueError('negative')\n    return a - b\n"
    )
    report = sandbox.run_tests(solution, TESTS)
    assert (report.passed, report.failed, report.pass_rate) == (0, 2, 0.0)
    small, negative = report.outcomes
    assert "AssertionError" in small.message
    assert "assert add(1, 2) == 3" in small.message
    assert "ValueError: negative" in negative.message
    assert "solution.py:3" in negative.message
    feedback = report.feedback(max_chars=300)
    assert len(feedback) <= 300
    assert "test_small" in feedback


def test_run_tests_syntax_error(sandbox: Sandbox) -> None:
    report = sandbox.run_tests("def add(a, b) return a + b", TESTS)
    assert report.error is not None
    assert "SyntaxError" in report.error
    assert (report.total, report.failed, report.pass_rate) == (2, 2, 0.0)


def test_run_tests_hanging_test_is_guarded(sandbox: Sandbox) -> None:
    solution = "def add(a, b):\n    while True:\n        pass\n"
    report = sandbox.run_tests(solution, TESTS, per_test_seconds=0.3)
    assert report.failed == 2
    assert all("timed out" in o.message for o in report.outcomes)


def test_run_tests_whole_run_timeout(sandbox: Sandbox) -> None:
    solution = "import time\ntime.sleep(100)\n"
    report = sandbox.run_tests(solution, TESTS)
    assert report.result.timed_out
    assert report.error is not None
    assert report.pass_rate == 0.0
    assert report.total == 2


FORGERIES = {
    "print_fake_report": (
        "import json\nfor m in ({'tests': ['test_small', 'test_negative']}, "
        "{'outcome': {'name': 'test_small', 'passed': True}}, {'done': True}):\n"
        "    print('0' * 32, json.dumps(m))\n"
        "def add(a, b): return 0\n"
    ),
    "find_nonce_and_exit": (
        "import gc, json, os, sys\n"
        "frame = sys._getframe(1)\n"
        "while frame and 'nonce' not in frame.f_locals: frame = frame.f_back\n"
        "nonce, channel = frame.f_locals['nonce'], frame.f_locals['channel']\n"
        "for m in ({'tests': ['test_small']}, {'outcome': {'name': 'test_small', "
        "'passed': True, 'message': '', 'seconds': 0}}, {'done': True}):\n"
        "    channel.write(nonce + ' ' + json.dumps(m) + '\\n')\n"
        "channel.flush(); os._exit(0)\n"
    ),
    "exit_early": "import os\nos._exit(0)\n",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_solution_cannot_fake_a_pass(sandbox: Sandbox, name: str) -> None:
    report = sandbox.run_tests(FORGERIES[name], TESTS)
    assert isinstance(report, TestReport)
    assert report.passed == 0
    assert report.pass_rate == 0.0
    assert report.failed == report.total == 2


def test_run_python_tool_through_the_registry(sandbox: Sandbox) -> None:
    from llmagentos.tools.code import run_python

    registry = ToolRegistry([run_python])
    assert "code.run_python" in registry
    spec = registry.get("code.run_python").spec
    assert "code" in spec.parameters["properties"]
    tool = registry.get("code.run_python")
    ok = tool.call({"code": "print(input() * 2)", "stdin": "ab"})
    assert ok.ok, ok.error
    assert ok.value["stdout"] == "abab\n"
    assert ok.value["ok"] is True
    hung = tool.call({"code": "while True: pass", "timeout_seconds": 0.5})
    assert hung.ok
    assert hung.value["timed_out"] is True
    assert hung.value["killed_by"] == "wall_timeout"
    bad = tool.call({"cod": "print(1)"})
    assert not bad.ok
