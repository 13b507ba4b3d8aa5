"""The code-generation agent end to end: the embedded SmolLM2 writes code, the sandbox tests it.

SmolLM2-135M is weak at code (see docs/codegen.md for its scores), so this checks that
the pipeline runs and reports sanely, not that the model scores well.
"""

from __future__ import annotations

import pytest

from llmagentos.codegen import builtin_tasks, evaluate, select_tasks
from llmagentos.codegen.env import default_sandbox
from llmagentos.exceptions import SandboxUnavailable
from llmagentos.llm import make_model

pytest.importorskip("llama_cpp", reason="needs llmagentos[local]")

pytestmark = pytest.mark.timeout(180)


def test_smollm2_writes_tests_and_repairs_in_the_sandbox() -> None:
    try:
        sandbox = default_sandbox()
    except SandboxUnavailable as err:
        pytest.skip(f"no sandbox on this host: {err}")
    tasks = select_tasks(builtin_tasks(), "sum_of_evens,factorial")
    report = evaluate(tasks, make_model("local:smollm2"), repairs=1, sandbox=sandbox)
    assert [t.task_id for t in report.tasks] == ["sum_of_evens", "factorial"]
    for result in report.tasks:
        attempts = result.greedy.attempts
        assert 1 <= len(attempts) <= 2
        assert attempts[0].reason == "first attempt"
        assert attempts[0].code.strip(), "some code was extracted from the reply"
        assert all(a.total == 4 for a in attempts)  # the tests ran in the sandbox
        if len(attempts) == 2:
            assert attempts[1].reason.startswith("repair after ")
        else:
            assert attempts[0].solved
    summary = report.summary()
    assert 0.0 <= summary["pass@1 (greedy)"] <= summary["solved after r repairs"]["1"] <= 1.0
    # sum_of_evens is solved at the first attempt by the greedy SmolLM2 (measured).
    assert report.tasks[0].greedy.solved_at == 0
