"""Session affinity: rendezvous hashing keeps a session on one replica, moves few
sessions when the pool changes, and lets a stateful service run replicas with no
shared store (real processes for the last)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest

from llmagentos import Agent
from llmagentos._processes import start_server
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.exceptions import ConfigError
from llmagentos.gateway import ServiceRegistry
from llmagentos.gateway.affinity import SessionAffinity, session_key
from llmagentos.gateway.balancer import Replica
from llmagentos.service import remote_modules

TAXI = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"
SESSIONS = [f"s{i}" for i in range(600)]


def _owners(replicas: list[Replica]) -> dict[str, str]:
    affinity = SessionAffinity()
    owners = {}
    for session in SESSIONS:
        chosen = affinity.pick(replicas, session)
        assert chosen is not None
        owners[session] = chosen.url
    return owners


def test_sessions_stick_and_spread() -> None:
    replicas = [Replica(f"http://r{i}") for i in range(3)]
    owners = _owners(replicas)
    assert owners == _owners(replicas)  # the same answer every time
    counts = Counter(owners.values())
    assert len(counts) == 3 and min(counts.values()) > 150  # about a third each


def test_a_pool_change_moves_only_the_sessions_it_must() -> None:
    replicas = [Replica(f"http://r{i}") for i in range(3)]
    before = _owners(replicas)
    after = _owners(replicas[:2])  # r2 leaves
    moved = {s for s in SESSIONS if before[s] != after[s]}
    assert moved == {s for s in SESSIONS if before[s] == "http://r2"}
    grown = _owners([*replicas, Replica("http://r3")])  # r3 joins
    assert all(grown[s] in (before[s], "http://r3") for s in SESSIONS)


def test_an_unavailable_replica_hands_its_sessions_to_their_next_choice() -> None:
    replicas = [Replica(f"http://r{i}") for i in range(3)]
    before = _owners(replicas)
    replicas[0].healthy = False
    after = _owners(replicas)
    assert all(after[s] == before[s] for s in SESSIONS if before[s] != "http://r0")
    assert "http://r0" not in after.values()
    everyone_down = [Replica("http://a", healthy=False), Replica("http://b", healthy=False)]
    affinity = SessionAffinity()
    assert affinity.pick(everyone_down, "s1") is None
    assert affinity.pick(everyone_down, "s1", available_only=False) is not None


def test_the_session_is_read_from_the_path_or_the_json_body() -> None:
    # The body comes parsed by the gateway's admission (one parse, one reading of it).
    assert session_key("/v1/sessions/abc/qtable", None) == "abc"
    assert session_key("/v1/agent/step", {"session": "s9", "action": 1}) == "s9"
    assert session_key("/v1/agent/step", {"session": 3}) is None
    assert session_key("/v1/agent/step", None) is None
    assert session_key("/v1/agent/step", ["session"]) is None


def test_balancing_is_checked_per_service() -> None:
    registry = ServiceRegistry([{"name": "a", "balancing": "session"}])
    entry = registry.get("a")
    assert entry is not None and entry.to_dict()["balancing"] == "session"
    with pytest.raises(ConfigError) as caught:
        ServiceRegistry([{"name": "b", "balancing": "sticky"}])
    assert caught.value.field == "services[0].balancing"


def _run_through(gateway_url: str, episodes: int) -> list[float]:
    agent = Agent(*remote_modules(f"{gateway_url}/taxi", "perception", "planning",
                                  "execution", "learning", timeout=30))  # fmt: skip
    return [e.total_reward for e in agent.run(episodes, seed=0, max_steps=40).episodes]


def test_a_stateful_service_runs_two_replicas_without_a_shared_store(tmp_path: Path) -> None:
    twin = build_agent(load_config(TAXI)).agent
    expected = [e.total_reward for e in twin.run(4, seed=0, max_steps=40).episodes]
    replicas = [start_server(["llmagentos", "serve", str(TAXI)]) for _ in range(2)]
    urls = json.dumps([url for _, url in replicas])
    processes: list[subprocess.Popen[bytes]] = [p for p, _ in replicas]
    try:
        for name, balancing in (("sticky", "session"), ("spread", "round_robin")):
            config = tmp_path / f"{name}.toml"
            config.write_text(
                "[gateway]\nhealth_interval = 0\n\n"
                f'[[services]]\nname = "taxi"\nreplicas = {urls}\nbalancing = "{balancing}"\n'
            )
            gateway, gateway_url = start_server(["llmagentos", "gateway", str(config)])
            processes.append(gateway)
            if balancing == "session":
                # Three agents at once, each session kept whole on one replica.
                assert [_run_through(gateway_url, 4) for _ in range(3)] == [expected] * 3
                served = [httpx.get(f"{url}/readyz").json()["sessions"] for _, url in replicas]
                assert sum(served) == 3
            else:
                # The control: spread over replicas with no shared store, a session's
                # state is split between them and the run cannot match.
                try:
                    returns = _run_through(gateway_url, 4)
                except Exception:  # a replica that never saw the reset refuses the step
                    returns = None
                assert returns != expected
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)
