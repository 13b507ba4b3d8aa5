"""Kill one of two replicas (SIGKILL) in the middle of episodes: every episode completes
through failover, with no step lost or applied twice.

Two ``llmagentos serve`` replicas share a session store (a SQLite file, as on one
machine, or a real Redis, as across machines, with signed state); the gateway routes round-robin
between them; the agent's four modules are remote, through the gateway. The run must
end exactly like the same agent in-process: same returns, same Q-table, same visits.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from llmagentos import Agent
from llmagentos._processes import start_server
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.service import remote_modules

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"
EPISODES, MAX_STEPS = 3, 60


def _start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    return start_server(["llmagentos", *args])


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_replica_killed_mid_episode_loses_and_doubles_no_step(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    twin = build_agent(load_config(TAXI))
    expected = [
        e.total_reward for e in twin.agent.run(EPISODES, seed=0, max_steps=MAX_STEPS).episodes
    ]
    assert twin.q_table is not None
    expected_q = twin.q_table.to_dict()

    store = str(tmp_path / "sessions.db")
    if backend == "redis":
        store = request.getfixturevalue("redis_url")
    options = ["--state-store", store, "--state-secret", "shared by the replicas"]
    replicas = [_start("serve", str(TAXI), *options) for _ in range(2)]
    config = tmp_path / "gateway.toml"
    urls = ", ".join(f'"{url}"' for _, url in replicas)
    config.write_text(f'[[services]]\nname = "taxi"\nreplicas = [{urls}]\ntimeout = 10\n')
    gateway, gateway_url = _start("gateway", str(config))
    try:
        modules = remote_modules(f"{gateway_url}/taxi", "perception", "planning", "execution",
                                 "learning", timeout=30)  # fmt: skip
        agent = Agent(*modules)
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                outcome["result"] = agent.run(EPISODES, seed=0, max_steps=MAX_STEPS)
            except Exception as err:  # reported below
                outcome["error"] = err

        worker = threading.Thread(target=run)
        worker.start()
        session = modules[0].client.session
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and worker.is_alive():  # wait until mid-run
            status = httpx.get(f"{gateway_url}/taxi/v1/sessions/{session}/qtable", timeout=10)
            if status.status_code == 200 and sum(map(sum, status.json()["visits"])) > 60:
                break
            time.sleep(0.05)
        victim, _ = replicas[1]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=15)
        worker.join(timeout=300)
        assert "error" not in outcome, outcome.get("error")
        result = outcome["result"]
        returns = [e.total_reward for e in result.episodes]  # type: ignore[attr-defined]
        assert returns == expected  # every episode completed, exactly as in-process
        final = httpx.get(f"{gateway_url}/taxi/v1/sessions/{session}/qtable", timeout=10).json()
        assert final["values"] == expected_q["values"]
        assert final["visits"] == expected_q["visits"]  # no step lost, none applied twice
    finally:
        for process, _ in [*replicas, (gateway, gateway_url)]:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
