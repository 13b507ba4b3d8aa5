"""A durable agent whose every step POSTs to a URL through the ``web.fetch`` tool.

Run as a script, it is the worker the idempotency-key tests start, kill and restart::

    python fetch_agent.py JOURNAL URL STEPS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from llmagentos import Agent
from llmagentos.durable import run_durable
from llmagentos.llm.types import ToolCall
from llmagentos.modules import ExecutionModule, PlanningModule
from llmagentos.modules.base import run_sync
from llmagentos.rl import RandomSelector
from llmagentos.tools import ToolRegistry
from llmagentos.tools.gate import ToolGate
from llmagentos.tools.http import http_tool
from llmagentos.types import Outcome


class Poster(ExecutionModule):
    """Steps FrozenLake, then POSTs the step's action to ``url``."""

    def __init__(self, url: str) -> None:
        super().__init__("FrozenLake-v1")
        self.url = url
        self.gate = ToolGate(ToolRegistry([http_tool(allow_hosts=["127.0.0.1"], timeout=60)]))

    def perform(self, action: Any) -> Outcome:
        outcome = super().perform(action)
        arguments = {"url": self.url, "method": "POST", "body": str(int(action))}
        call = ToolCall(id="p", name="web.fetch", arguments=json.dumps(arguments))
        (result,) = run_sync(self.gate.run_calls([call]))
        outcome.info = {**outcome.info, "posted": result.ok}
        return outcome


def main(argv: list[str]) -> int:
    journal, url, steps = Path(argv[0]), argv[1], int(argv[2])
    agent = Agent(
        planning_module=PlanningModule(RandomSelector(4, seed=0)),
        execution_module=Poster(url),
        name="poster",
    )
    result = run_durable(agent, journal, 1, seed=0, max_steps=steps)
    return 0 if result.completed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
