"""Run the maze agent whose four modules are services behind the gateway.

python examples/deploy/run_remote_agent.py http://127.0.0.1:8080 [STEPS]
"""

from __future__ import annotations

import sys
import uuid

from llmagentos import Agent
from llmagentos.service import (
    RemoteExecution,
    RemoteLearning,
    RemotePerception,
    RemotePlanning,
    ServiceClient,
)


def main(gateway: str, steps: int = 5) -> None:
    session = uuid.uuid4().hex  # one agent: the same session in every service

    def client(service: str) -> ServiceClient:
        return ServiceClient(f"{gateway}/{service}", session=session, timeout=120)

    agent = Agent(
        RemotePerception(client("perception")),
        RemotePlanning(client("planning")),
        RemoteExecution(client("execution")),
        RemoteLearning(client("learning")),
        name="maze-remote",
    )
    result = agent.run_episode(seed=0, max_steps=steps)
    print(f"{result.length} steps, return {result.total_reward:g}")
    record = agent.last_record
    if record is not None:
        print(f"last action {record.action}: {record.reason}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)
