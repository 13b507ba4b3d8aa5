"""The execution module's tool executor: actions that are tool calls.

The seed's execution module "executes actions such as HTTP requests": with a
:class:`ToolExecutor` an agent's action is a tool call (or one model turn's list of
them). An action looks like ``{"tool": "web.fetch", "arguments": {"url": "..."}}`` or
is a :class:`~llmagentos.llm.types.ToolCall`; the calls run through a
:class:`~llmagentos.tools.ToolRegistry` or a :class:`~llmagentos.tools.gate.ToolGate`
(permissions, approvals, budgets, audit). The observation is the list of results as
dicts (``ok``, ``value`` or ``error``, ``name``), also in ``info["tool_results"]`` for
:mod:`llmagentos.modules.tool_feedback`. A malformed action is the planner's mistake:
it becomes an error result the agent sees, never an exception.

Calling the ``finish`` tool name (``{"tool": "finish", "arguments": {"answer": ...}}``)
ends the episode; its arguments are the last observation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llmagentos.llm.types import ToolCall
from llmagentos.modules.base import run_sync
from llmagentos.modules.tool_loop import ToolRunner
from llmagentos.tools.base import ToolResult
from llmagentos.types import Action, Observation, Outcome

__all__ = ["ToolExecutor", "as_tool_calls"]


def as_tool_calls(action: Action) -> list[ToolCall] | str:
    """The tool calls an action stands for, or why it is not one (for the error result)."""
    items = action if isinstance(action, list | tuple) else [action]
    if not items:
        return "the action is an empty list of tool calls"
    calls: list[ToolCall] = []
    for index, item in enumerate(items):
        if isinstance(item, ToolCall):
            calls.append(item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("tool"), str):
            return (
                f"action item {index} is not a tool call: expected "
                f'{{"tool": NAME, "arguments": {{...}}}}, got {item!r:.80}'
            )
        arguments = item.get("arguments", {})
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, default=str)
        calls.append(ToolCall(id=f"call-{index}", name=item["tool"], arguments=text))
    return calls


class ToolExecutor:
    """Runs tool-call actions (see the module docstring).

    Args:
        tools: the registry or gate the calls go through.
        finish: the tool name that ends the episode (not a registered tool).
        task: the first observation of each episode (what the agent is asked to do).
        max_calls: the most calls one action may make (more is an error result).
    """

    def __init__(
        self, tools: ToolRunner, *, finish: str = "finish", task: Any = None, max_calls: int = 16
    ) -> None:
        self.tools = tools
        self.finish = finish
        self.task = task
        self.max_calls = max_calls

    def reset(self, *, seed: int | None = None) -> tuple[Observation, dict[str, Any]]:
        return self.task, {"tools": [spec.name for spec in self.tools.specs()]}

    def execute(self, action: Action) -> Outcome:
        calls = as_tool_calls(action)
        if isinstance(calls, str):
            return self._results([ToolResult(ok=False, error=calls, name="")])
        if len(calls) > self.max_calls:
            error = f"{len(calls)} tool calls in one action; at most {self.max_calls}"
            return self._results([ToolResult(ok=False, error=error, name="")])
        finishing = [c for c in calls if c.name == self.finish]
        if finishing:
            try:
                answer = finishing[0].parsed_arguments()
            except Exception as err:  # a malformed finish is still a finish, with the error
                answer = {"error": str(err)}
            return Outcome(answer, 0.0, terminated=True, info={"finished": True})
        results = run_sync(self._run(calls))
        return self._results(results)

    async def _run(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        runner = getattr(self.tools, "run_calls")  # noqa: B009 - both kinds name it so
        return list(await runner(calls))

    @staticmethod
    def _results(results: Sequence[ToolResult]) -> Outcome:
        data = [result.model_dump(mode="json") for result in results]
        return Outcome(data, 0.0, info={"tool_results": data})
