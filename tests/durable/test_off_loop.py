"""A durable run's journal I/O never blocks the event loop other agents share.

Another connection holds the journal's write lock; an async durable run (its tool
gate, its model and its step commits all write) must wait for the lock off the loop,
so a heartbeat task on the same loop keeps beating, and it is the heartbeat that
releases the lock. Were any journal write made on the loop, the heartbeat could
never beat, the lock never be released, and the write would fail when its busy
timeout ran out.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

from llmagentos import Agent
from llmagentos.durable import DurableModel, DurableRunner, Journal
from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import ModelRequest, ModelResponse, ToolCall
from llmagentos.modules import ExecutionModule, PlanningModule
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.gate import ToolGate
from llmagentos.types import Decision, Outcome


class _Asking(PlanningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = DurableModel(FunctionModel(lambda request: ModelResponse(text="1")))

    async def adecide(self, features: object) -> Decision:
        request = ModelRequest.model_validate({"messages": [{"role": "user", "content": "go"}]})
        reply = await self.model.arequest(request)
        return Decision(int(reply.text or 0), "asked")


class _Calling(ExecutionModule):
    def __init__(self) -> None:
        super().__init__("FrozenLake-v1")

        @tool(namespace="log")
        def note(text: str) -> str:
            """Note something."""
            return text

        self.gate = ToolGate(ToolRegistry([note]))

    async def aperform(self, action: Any) -> Outcome:
        outcome = await super().aperform(action)
        call = ToolCall(id="n", name="log.note", arguments=json.dumps({"text": str(action)}))
        await self.gate.run_calls([call])
        return outcome


async def test_journal_writes_wait_for_the_lock_off_the_event_loop(tmp_path):
    path = tmp_path / "run.db"
    runner = DurableRunner(path, agent="a")
    agent = Agent(planning_module=_Asking(), execution_module=_Calling())
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("begin immediate")  # every journal write now waits for this lock
    seen: dict[str, int] = {}

    async def heartbeat() -> None:
        for _ in range(5):
            await asyncio.sleep(0.01)
        with Journal(path, create=False) as reader:  # steps: the log's too
            seen["steps"], seen["effects"] = reader.step_count(), len(reader.effect_keys("started"))
        locker.execute("rollback")

    beat = asyncio.create_task(heartbeat())
    result = await runner.arun(agent, 1, seed=0, max_steps=4)
    await beat
    runner.close()
    locker.close()
    assert seen == {"steps": 0, "effects": 0}  # the run was waiting while the loop beat
    assert result.episodes and result.episodes[0].length >= 1
