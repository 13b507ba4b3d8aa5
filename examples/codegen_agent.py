"""The code-generation agent on one task: write, test in the sandbox, repair.

Run: python examples/codegen_agent.py [task_id] [model_id]
(defaults: fizzbuzz_word, local:smollm2). Prints each attempt's reason and test result.
"""

from __future__ import annotations

import sys

from llmagentos.codegen import CodeTaskEnv, build_coder_agent, builtin_tasks, select_tasks, solve
from llmagentos.llm import make_model


def main() -> None:
    task_id = sys.argv[1] if len(sys.argv) > 1 else "fizzbuzz_word"
    model_id = sys.argv[2] if len(sys.argv) > 2 else "local:smollm2"
    (task,) = select_tasks(builtin_tasks(), task_id)
    agent = build_coder_agent(make_model(model_id), CodeTaskEnv(task, repairs=2))
    run = solve(agent, task)
    for attempt in run.attempts:
        print(f"attempt {attempt.index}: {attempt.reason}")
        print(
            f"  {attempt.passed}/{attempt.total} tests passed"
            + (f" ({attempt.error})" if attempt.error else "")
        )
        print("  " + attempt.code.replace("\n", "\n  ").rstrip())
    print("solved" if run.solved_at is not None else "not solved", f"in {run.seconds:.1f} s")


if __name__ == "__main__":
    main()
