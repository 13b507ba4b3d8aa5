"""The coder agent's loop: write, test in the sandbox, read the failures, repair (bounded)."""

from __future__ import annotations

from typing import Any

import pytest

from llmagentos.checks import check_env
from llmagentos.codegen import CodeTaskEnv, build_coder_agent, evaluate, solve
from llmagentos.codegen.planner import CoderPlanningModule
from llmagentos.codegen.tasks import CodeTask
from llmagentos.exceptions import EnvError, ModelConnectionError
from llmagentos.llm.testing import ScriptedModel
from llmagentos.modules.tool_feedback import OutcomeRecorder, ToolOutcomeFeedback
from llmagentos.sandbox import Sandbox
from llmagentos.types import StepRecord

TASK = CodeTask(
    id="double",
    entry_point="double",
    prompt=(
        'def double(x: int) -> int:\n    """Return twice x.\n\n    >>> double(2)\n    4\n    """\n'
    ),
    tests=(
        "from solution import *\n\n"
        "def test_two():\n    assert double(2) == 4\n\n"
        "def test_zero():\n    assert double(0) == 0\n\n"
        "def test_negative():\n    assert double(-3) == -6\n"
    ),
    solution="def double(x: int) -> int:\n    return 2 * x\n",
)
WRONG = "Here you go:\n```python\ndef double(x: int) -> int:\n    return x + 2\n```\nDone."
RIGHT = "```python\ndef double(x: int) -> int:\n    return x * 2\n```"


def make_agent(model: Any, sandbox: Sandbox, repairs: int = 2) -> Any:
    env = CodeTaskEnv(TASK, repairs=repairs, sandbox=sandbox)
    return build_coder_agent(model, env)


def test_a_wrong_first_reply_is_repaired_from_the_test_failures(sandbox: Sandbox) -> None:
    model = ScriptedModel([WRONG, RIGHT])
    agent = make_agent(model, sandbox)
    records: list[StepRecord] = []
    agent.listeners.append(records.append)
    run = solve(agent, TASK)
    model.assert_all_used()
    assert run.solved_at == 1 and len(run.attempts) == 2
    first, second = run.attempts
    assert first.reason == "first attempt"
    assert (first.passed, first.total) == (1, 3) and first.code.startswith("def double")
    # The reason names the failures it repairs; the repair prompt quotes them.
    assert second.reason.startswith("repair after 2/3 tests failed: test_zero: AssertionError")
    repair_prompt = model.requests[1].messages[-1].content or ""
    assert "assert double(0) == 0" in repair_prompt
    assert "return x + 2" not in repair_prompt  # the default variant leaves it out
    assert second.solved and second.reward == 1.0
    # The episode ended as a success, the rewards went through the learning module.
    assert agent.terminated and not agent.truncated
    assert records[-1].info["is_success"] is True
    assert records[-1].info["feedback"]["text"] == "all 3 tests passed"
    recorder = agent.learning_module.optimizer
    assert isinstance(recorder, OutcomeRecorder) and recorder.updates == 2
    assert recorder.total == pytest.approx(1 / 3 + 1.0)
    assert isinstance(agent.execution_module.feedback, ToolOutcomeFeedback)


WRONG_TOO = "```python\ndef double(x: int) -> int:\n    return x\n```"


def test_repairs_are_bounded(sandbox: Sandbox) -> None:
    model = ScriptedModel([WRONG, WRONG_TOO])
    agent = make_agent(model, sandbox, repairs=1)
    run = solve(agent, TASK)
    assert run.solved_at is None and len(run.attempts) == 2
    assert agent.truncated and not agent.terminated
    env = agent.execution_module.env
    with pytest.raises(EnvError, match="attempts are used"):
        env.step("def double(x):\n    return 2 * x\n")


def test_code_that_does_not_import_is_reported_and_repaired(sandbox: Sandbox) -> None:
    model = ScriptedModel(["```python\ndef double(x)\n    return 2 * x\n```", RIGHT])
    run = solve(make_agent(model, sandbox), TASK)
    assert run.attempts[0].error is not None and "SyntaxError" in run.attempts[0].error
    assert run.attempts[1].reason.startswith("repair after 3/3 tests failed: Error:")
    assert "SyntaxError" in (model.requests[1].messages[-1].content or "")
    assert run.solved_at == 1


def test_a_model_error_submits_no_code_and_says_why(sandbox: Sandbox) -> None:
    model = ScriptedModel([ModelConnectionError("refused", model="m"), RIGHT])
    run = solve(make_agent(model, sandbox), TASK)
    assert "model error, no code: m: refused" in run.attempts[0].reason
    assert run.solved_at == 1
    raising = CoderPlanningModule(ScriptedModel([ModelConnectionError("x")]), on_error="raise")
    with pytest.raises(ModelConnectionError):
        raising.decide(CodeTaskEnv(TASK, sandbox=sandbox).reset()[0])


def test_observations_carry_the_task_the_code_and_the_feedback(sandbox: Sandbox) -> None:
    env = CodeTaskEnv(TASK, repairs=1, sandbox=sandbox)
    first, info = env.reset(seed=0)
    assert first["code"] is None and first["feedback"] is None and first["attempts_left"] == 2
    assert first["signature"] == "def double(x: int) -> int:" and info == {"task_id": "double"}
    after, reward, terminated, truncated, step_info = env.step("def double(x):\n    return x\n")
    assert (reward, terminated, truncated) == (pytest.approx(1 / 3), False, False)
    assert after["code"] == "def double(x):\n    return x\n" and after["failed"] == 2
    assert "test_two" in after["feedback"] and step_info["report"]["total"] == 3
    assert env.action_space.contains("x = 1") and not env.action_space.contains(3)


def test_evaluate_scores_greedy_repairs_and_samples(sandbox: Sandbox) -> None:
    # Greedy: wrong, then right (solved after 1 repair). Samples: right, wrong, right.
    model = ScriptedModel([WRONG, RIGHT, RIGHT, WRONG, RIGHT])
    seen: list[str] = []
    report = evaluate(
        [TASK],
        model,
        repairs=2,
        samples=3,
        sandbox=sandbox,
        progress=lambda task_id, what: seen.append(what),
    )
    model.assert_all_used()
    assert seen == ["greedy", "sample 1", "sample 2", "sample 3"]
    assert report.pass_at_1_greedy == 0.0 and report.solved_after(1) == 1.0
    assert report.tasks[0].sample_passes == 2
    assert report.pass_at(1) == pytest.approx(2 / 3) and report.pass_at(3) == 1.0
    # Samples are drawn at the sampling temperature with a seed per sample.
    sample_settings = [r.settings for r in model.requests[2:]]
    assert [s.temperature for s in sample_settings] == [0.8, 0.8, 0.8]
    assert [s.seed for s in sample_settings] == [0, 1, 2]
    assert model.requests[0].settings.temperature == 0.0
    summary = report.to_dict()["summary"]
    assert summary["solved after r repairs"] == {"0": 0.0, "1": 1.0, "2": 1.0}
    assert summary["pass@k (sampled)"] == {"1": pytest.approx(2 / 3), "3": 1.0}


def test_a_repair_that_repeats_the_failing_code_is_resampled(sandbox: Sandbox) -> None:
    # The greedy repair hands back the same code; a seeded sample at T=0.8 fixes it.
    model = ScriptedModel([WRONG, WRONG, RIGHT])
    run = solve(make_agent(model, sandbox), TASK, seed=3)
    model.assert_all_used()
    assert run.solved_at == 1
    assert run.attempts[1].reason.endswith("; resampled 1x (the reply repeated an earlier attempt)")
    retry = model.requests[2].settings
    assert retry.temperature == 0.8 and retry.seed == 3 * 1000 + 1 * 10 + 1
    assert model.requests[2].messages == model.requests[1].messages


def test_resampling_is_bounded_and_can_be_switched_off(sandbox: Sandbox) -> None:
    model = ScriptedModel([WRONG, WRONG, WRONG, WRONG])
    run = solve(make_agent(model, sandbox, repairs=1), TASK)
    model.assert_all_used()  # 1 first attempt + 1 repair + 2 resamples
    assert run.attempts[1].reason.endswith(
        "resampled 2x (the reply repeated an earlier attempt, still the same)"
    )
    once = ScriptedModel([WRONG, WRONG])
    env = CodeTaskEnv(TASK, repairs=1, sandbox=sandbox)
    assert len(solve(build_coder_agent(once, env, resample=0), TASK).attempts) == 2
    once.assert_all_used()


def test_the_env_keeps_the_gymnasium_contract(sandbox: Sandbox) -> None:
    check_env(CodeTaskEnv(TASK, repairs=2, sandbox=sandbox), steps=3)


def test_variants_that_show_the_failing_code() -> None:
    observation = {
        "prompt": TASK.prompt,
        "entry_point": "double",
        "code": "def double(x):\n    return x + 2\n",
        "feedback": "2/3 tests passed.\n- test_zero: AssertionError (...)",
        "failed": 1,
        "total": 3,
    }
    planner = CoderPlanningModule(ScriptedModel([]), variant="complete")
    text, reason = planner.prompt(observation)
    assert "return x + 2" in text and "- test_zero: AssertionError" in text
    assert reason == "repair after 1/3 tests failed: test_zero: AssertionError (...)"
    first, why = planner.prompt({**observation, "code": None})
    assert why == "first attempt" and "return x + 2" not in first and "def double" in first
