"""The bundled task set: well formed, and its tests are meaningful in the real sandbox."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from llmagentos.codegen.tasks import CodeTask, builtin_tasks, load_tasks, select_tasks
from llmagentos.exceptions import ConfigError
from llmagentos.sandbox import Sandbox

TASKS = builtin_tasks()


def test_at_least_twenty_tasks_with_unique_ids() -> None:
    assert len(TASKS) >= 20
    assert len({t.id for t in TASKS}) == len(TASKS)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_each_task_is_well_formed(task: CodeTask) -> None:
    prompt = ast.parse(task.prompt + "    ...\n")
    function = prompt.body[0]
    assert isinstance(function, ast.FunctionDef) and function.name == task.entry_point
    docstring = ast.get_docstring(function) or ""
    assert ">>>" in docstring, "the docstring shows an example"
    assert function.returns is not None, "the signature is typed"
    tests = ast.parse(task.tests)
    names = [n.name for n in tests.body if isinstance(n, ast.FunctionDef)]
    assert 3 <= len(names) <= 6 and all(n.startswith("test_") for n in names)
    assert "from solution import *" in task.tests
    assert task.signature.startswith(f"def {task.entry_point}(")


async def test_reference_solutions_pass_and_stubs_fail_in_the_sandbox(sandbox: Sandbox) -> None:
    async def check(task: CodeTask) -> None:
        report = await sandbox.arun_tests(task.solution, task.tests)
        assert report.ok, f"{task.id}: {report.feedback()}"
        stub = f"def {task.entry_point}(*args, **kwargs):\n    return None\n"
        wrong = await sandbox.arun_tests(stub, task.tests)
        assert wrong.failed >= 1, f"{task.id}: a stub returning None passes every test"
        assert wrong.error is None

    # A few at a time: each run is a short-lived confined process.
    for start in range(0, len(TASKS), 4):
        await asyncio.gather(*(check(task) for task in TASKS[start : start + 4]))


def test_select_tasks() -> None:
    assert select_tasks(TASKS, "all") == TASKS
    assert [t.id for t in select_tasks(TASKS, "gcd, clamp,gcd")] == ["gcd", "clamp"]
    with pytest.raises(ConfigError, match="did you mean 'gcd'"):
        select_tasks(TASKS, "gdc")
    with pytest.raises(ConfigError, match="no task ids"):
        select_tasks(TASKS, " , ")


def test_load_a_task_file(tmp_path: Path) -> None:
    file = tmp_path / "mine.toml"
    file.write_text(
        "[[task]]\nid = 'one'\nentry_point = 'one'\n"
        "prompt = 'def one() -> int:'\ntests = 'from solution import *'\n"
        "solution = 'def one() -> int:\\n    return 1'\n"
    )
    assert [t.id for t in load_tasks(file)] == ["one"]
    file.write_text("[[task]]\nid = 'two'\n")
    with pytest.raises(ConfigError, match="missing or empty field"):
        load_tasks(file)
    file.write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_tasks(file)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tasks(tmp_path / "missing.toml")
