"""The embedded SmolLM2 calls a tool through a gate before it decides (real model)."""

from __future__ import annotations

import pytest

from llmagentos.llm import make_model
from llmagentos.modules.llm_planning import LLMPlanningModule
from llmagentos.safety import MemoryAudit, ToolPolicy
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.gate import ToolGate

pytest.importorskip("llama_cpp", reason="needs llmagentos[local]")

DIRECTIONS = ["north", "south", "east", "west"]


def test_smollm2_looks_with_a_tool_then_decides():
    seen: list[str] = []

    @tool(namespace="maze")
    def look(direction: str) -> str:
        """Look in a direction and say what is there.

        Args:
            direction: north, south, east or west.
        """
        seen.append(direction)
        return "the dock" if direction == "east" else "a wall"

    @tool(namespace="maze")
    def teleport(x: int, y: int) -> str:
        """Jump anywhere (not allowed for this agent)."""
        seen.append("teleport")
        return "teleported"

    audit = MemoryAudit()
    gate = ToolGate(
        ToolRegistry([look, teleport]), policy=ToolPolicy(deny=["maze.teleport"]), audit=audit
    )
    planner = LLMPlanningModule(
        make_model("local:smollm2"),
        DIRECTIONS,
        task="a robot looking for the dock",
        guidance="Use maze.look to find which way the dock is before you move.",
        tools=gate,
        max_tool_rounds=1,
        tool_choice="required",
        max_tokens=48,
    )
    decision = planner.decide("You are in a room. You cannot see the dock.")
    assert seen and "teleport" not in seen  # the model looked; the denied tool is not offered
    assert all(direction in DIRECTIONS for direction in seen)
    assert [entry["kind"] for entry in audit.entries] == ["tool_call"] * len(seen)
    assert decision.action in range(len(DIRECTIONS))
    assert decision.reason is not None and "(after maze.look" in decision.reason
