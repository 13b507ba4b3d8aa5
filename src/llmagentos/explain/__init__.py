"""Why an agent did what it did: run folders as data, and one step explained.

``llmagentos explain RUN --episode E --step S`` prints :func:`explain_step`; the
dashboard (``llmagentos dashboard``) shows the same explanation, read by the same code.
"""

from llmagentos.explain.folder import RunFolder, find_runs, open_run
from llmagentos.explain.step import ActionOption, ModelCall, StepExplanation, explain_step

__all__ = [
    "ActionOption",
    "ModelCall",
    "RunFolder",
    "StepExplanation",
    "explain_step",
    "find_runs",
    "open_run",
]
