"""The code-generation agent: write a function, run its tests in the sandbox, repair.

* :mod:`~llmagentos.codegen.tasks` — the bundled task set (``tasks/*.toml``);
* :mod:`~llmagentos.codegen.env` — :class:`CodeTaskEnv`, one task as an environment;
* :mod:`~llmagentos.codegen.planner` — :class:`CoderPlanningModule`, the LLM coder;
* :mod:`~llmagentos.codegen.extract` — code out of a model's reply;
* :mod:`~llmagentos.codegen.evaluate` — pass@1, pass@k and solved-after-r-repairs.

See docs/codegen.md. ``llmagentos codegen`` runs the evaluation from the command line.
"""

from llmagentos.codegen.env import CodeTaskEnv, report_to_dict
from llmagentos.codegen.evaluate import (
    CodegenReport,
    build_coder_agent,
    evaluate,
    pass_at_k,
    solve,
)
from llmagentos.codegen.extract import extract_code
from llmagentos.codegen.planner import CoderPlanningModule
from llmagentos.codegen.prompts import PROMPT_VARIANTS, PromptVariant
from llmagentos.codegen.tasks import CodeTask, builtin_tasks, load_tasks, select_tasks

__all__ = [
    "PROMPT_VARIANTS",
    "CodeTask",
    "CodeTaskEnv",
    "CodegenReport",
    "CoderPlanningModule",
    "PromptVariant",
    "build_coder_agent",
    "builtin_tasks",
    "evaluate",
    "extract_code",
    "load_tasks",
    "pass_at_k",
    "report_to_dict",
    "select_tasks",
    "solve",
]
