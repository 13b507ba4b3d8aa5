"""Let a planner's model call tools before it decides: the consult loop.

Each round offers the tools; if the model calls some, they run (in parallel, through
the registry or a :class:`~llmagentos.tools.gate.ToolGate`, so permissions, approvals,
budgets and the audit trail apply) and their results join the conversation. The loop
ends when the model answers without calling a tool, or after ``rounds`` rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from llmagentos.llm.types import Message, Tool, ToolCall, ToolChoice

if TYPE_CHECKING:
    from llmagentos.llm.base import Model

__all__ = ["ToolRunner", "consult_tools"]


class ToolRunner(Protocol):
    """What the loop needs of a tool registry or gate."""

    def specs(self) -> list[Tool]: ...

    async def run_to_messages(self, tool_calls: Sequence[ToolCall]) -> list[Message]: ...


async def consult_tools(
    model: Model,
    messages: list[Message],
    tools: ToolRunner,
    *,
    system: str,
    rounds: int,
    settings: dict[str, Any],
    first_choice: ToolChoice = "auto",
) -> list[str]:
    """Run up to ``rounds`` tool rounds, appending to ``messages``; return the tools called.

    ``first_choice`` is the first round's ``tool_choice``: ``"required"`` makes a small
    model look before it decides (left to ``"auto"``, a 135M model rarely calls a tool).
    """
    called: list[str] = []
    specs = tools.specs()
    if not specs:
        return called
    for round_index in range(rounds):
        choice = first_choice if round_index == 0 else "auto"
        reply = await model.achat(
            messages, system=system, tools=specs, tool_choice=choice, **settings
        )
        if not reply.tool_calls:
            break
        messages.append(reply.message())
        messages.extend(await tools.run_to_messages(reply.tool_calls))
        called.extend(call.name for call in reply.tool_calls)
    return called
