"""LLM planners that call tools before they decide, through a registry or a gate."""

from __future__ import annotations

import json

import pytest

from llmagentos.exceptions import ApprovalPending, ConfigError
from llmagentos.llm.testing import ScriptedModel
from llmagentos.llm.types import ModelResponse, ToolCall
from llmagentos.modules.llm_planning import LLMPlanningModule
from llmagentos.safety import MemoryAudit, ToolPolicy
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.gate import ToolGate

ACTIONS = ["north", "south", "east", "west"]


def _tools(seen: list[str]) -> ToolRegistry:
    @tool(namespace="maze")
    def look(direction: str) -> str:
        """What lies in a direction.

        Args:
            direction: north, south, east or west.
        """
        seen.append(direction)
        return "the dock" if direction == "east" else "a wall"

    @tool(namespace="maze")
    def dig(direction: str) -> str:
        """Dig through a wall."""
        seen.append("dig")
        return "dug"

    return ToolRegistry([look, dig])


def _calls(*calls: tuple[str, dict[str, str]]) -> ModelResponse:
    return ModelResponse(
        tool_calls=tuple(
            ToolCall(id=f"c{i}", name=name, arguments=json.dumps(args))
            for i, (name, args) in enumerate(calls)
        ),
        finish_reason="tool_calls",
    )


def _answer(action: str, reason: str) -> str:
    return json.dumps({"reason": reason, "action": action})


async def test_the_model_calls_tools_then_decides_with_their_results():
    seen: list[str] = []
    model = ScriptedModel([
        _calls(("maze.look", {"direction": "east"}), ("maze.look", {"direction": "west"})),
        "I know enough",
        _answer("east", "the dock is east"),
    ])  # fmt: skip
    planner = LLMPlanningModule(model, ACTIONS, tools=_tools(seen))
    decision = await planner.adecide("you are in a corridor")
    assert decision.action == ACTIONS.index("east")
    assert decision.reason == "llm: the dock is east (after maze.look, maze.look)"
    assert sorted(seen) == ["east", "west"]  # both calls of the turn ran
    first, second, final = model.requests
    assert {t.name for t in first.tools} == {"maze.look", "maze.dig"}
    tool_messages = [m for m in second.messages if m.role == "tool"]
    assert [json.loads(m.content or "") for m in tool_messages] == [
        {"ok": True, "value": "the dock"},
        {"ok": True, "value": "a wall"},
    ]
    assert final.output_schema is not None and any(
        m.role == "tool" for m in final.messages
    )  # the decision sees the tool results
    model.assert_all_used()


async def test_a_bad_tool_call_is_a_result_the_model_can_repair_from():
    seen: list[str] = []
    model = ScriptedModel([
        _calls(("maze.peek", {"direction": "east"})),
        _calls(("maze.look", {"where": "east"})),
        _calls(("maze.look", {"direction": "east"})),
        _answer("east", "dock east"),
    ])  # fmt: skip
    planner = LLMPlanningModule(model, ACTIONS, tools=_tools(seen), max_tool_rounds=3)
    decision = await planner.adecide("corridor")
    assert decision.action == ACTIONS.index("east")
    unknown = json.loads(model.requests[1].messages[-1].content or "")
    assert unknown["ok"] is False and "maze.look" in unknown["error"]  # suggests the real one
    wrong = json.loads(model.requests[2].messages[-1].content or "")
    assert wrong["ok"] is False and "direction" in wrong["error"]
    assert seen == ["east"]


async def test_a_gate_applies_the_agents_permissions_and_audits():
    seen: list[str] = []
    audit = MemoryAudit()
    gate = ToolGate(_tools(seen), policy=ToolPolicy(deny=["maze.dig"]), audit=audit)
    model = ScriptedModel([
        _calls(("maze.dig", {"direction": "north"})),
        "fine",
        _answer("south", "north is walled"),
    ])  # fmt: skip
    planner = LLMPlanningModule(model, ACTIONS, tools=gate)
    decision = await planner.adecide("corridor")
    assert decision.action == ACTIONS.index("south")
    assert [t.name for t in model.requests[0].tools] == ["maze.look"]  # dig is not offered
    denied = json.loads(model.requests[1].messages[-1].content or "")
    assert "permission denied" in denied["error"]
    assert seen == [] and audit.kinds() == ["tool_error"]


async def test_a_call_awaiting_approval_pauses_the_decision():
    gate = ToolGate(_tools([]), policy=ToolPolicy(approve=["maze.dig"]))
    model = ScriptedModel([_calls(("maze.dig", {"direction": "north"}))])
    planner = LLMPlanningModule(model, ACTIONS, tools=gate)
    with pytest.raises(ApprovalPending):
        await planner.adecide("corridor")


def test_tool_rounds_must_not_be_negative():
    with pytest.raises(ConfigError, match="max_tool_rounds"):
        LLMPlanningModule(ScriptedModel([]), ACTIONS, tools=_tools([]), max_tool_rounds=-1)
