"""Module services in a real process, and remote modules that make an Agent span it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmagentos import Agent
from llmagentos._processes import free_port
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.exceptions import ModuleError
from llmagentos.service import remote_modules

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "configs" / "taxi.toml"
EPISODES = 5


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "llmagentos", "serve", str(CONFIG), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the service exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the service never became ready")
    yield url
    process.terminate()
    process.wait(timeout=15)


def _local_returns() -> tuple[list[float], dict[str, object]]:
    built = build_agent(load_config(CONFIG))
    result = built.agent.run(EPISODES, seed=0, max_steps=100)
    assert built.q_table is not None
    return [e.total_reward for e in result.episodes], built.q_table.to_dict()


def test_remote_planning_and_learning_give_the_in_process_returns(service: str) -> None:
    expected, expected_q = _local_returns()
    built = build_agent(load_config(CONFIG))  # local perception and environment
    planning, learning = remote_modules(service, "planning", "learning")
    agent = Agent(built.agent.perception_module, planning, built.agent.execution_module, learning)
    result = agent.run(EPISODES, seed=0, max_steps=100)
    assert [e.total_reward for e in result.episodes] == expected
    remote_q = httpx.get(f"{service}/v1/sessions/{planning.client.session}/qtable").json()
    assert remote_q["values"] == expected_q["values"]  # the Q-table learned on the service
    assert learning.client.session == planning.client.session


def test_all_four_modules_remote_sync_and_async(service: str) -> None:
    expected, _ = _local_returns()
    agent = Agent(*remote_modules(service, "perception", "planning", "execution", "learning"))
    result = agent.run(EPISODES, seed=0, max_steps=100)
    assert [e.total_reward for e in result.episodes] == expected

    async_agent = Agent(*remote_modules(service, "perception", "planning", "execution", "learning"))

    async def run() -> list[float]:
        outcome = await async_agent.arun(EPISODES, seed=0, max_steps=100)
        return [e.total_reward for e in outcome.episodes]

    import asyncio

    assert asyncio.run(run()) == expected


def test_sessions_keep_their_own_state(service: str) -> None:
    first = remote_modules(service, "planning", "learning", "execution", "perception")
    second = remote_modules(service, "planning", "learning", "execution", "perception")
    ran = Agent(first[3], first[0], first[2], first[1]).run(5, seed=1, max_steps=50)
    untouched = httpx.get(f"{service}/v1/sessions/{second[0].client.session}/qtable")
    assert untouched.status_code == 404  # the second session has not even started
    also = Agent(second[3], second[0], second[2], second[1]).run(1, seed=2, max_steps=5)
    one = httpx.get(f"{service}/v1/sessions/{first[0].client.session}/qtable").json()
    two = httpx.get(f"{service}/v1/sessions/{second[0].client.session}/qtable").json()
    # Each session's Q-table counts exactly its own agent's updates.
    assert sum(map(sum, one["visits"])) == sum(e.length for e in ran.episodes)
    assert sum(map(sum, two["visits"])) == sum(e.length for e in also.episodes) == 5


def test_the_whole_agent_as_a_service(service: str) -> None:
    reply = httpx.post(
        f"{service}/v1/agent/episode", json={"session": "whole", "seed": 0, "max_steps": 30}
    )
    assert reply.status_code == 200 and reply.json()["length"] == 30
    first = httpx.post(f"{service}/v1/agent/reset", json={"session": "w2", "seed": 3}).json()
    action = httpx.post(
        f"{service}/v1/agent/act", json={"session": "w2", "observation": first["observation"]}
    ).json()["action"]
    step = httpx.post(f"{service}/v1/agent/step", json={"session": "w2", "action": action})
    assert step.status_code == 200 and isinstance(step.json()["reward"], float)


def test_client_mistakes_are_4xx_naming_the_problem(service: str) -> None:
    httpx.post(f"{service}/v1/execution/reset", json={"session": "bad", "seed": 0})
    outside = httpx.post(f"{service}/v1/execution/perform", json={"session": "bad", "action": 99})
    assert outside.status_code == 400 and "99" in outside.json()["detail"]
    wrong = httpx.post(f"{service}/v1/learning/learn", json={"session": "bad", "observation": 1,
                                                              "reward": "lots"})  # fmt: skip
    assert wrong.status_code == 422 and "reward" in wrong.text
    garbled = httpx.post(
        f"{service}/v1/planning/decide",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert garbled.status_code == 422
    bad_session = httpx.post(
        f"{service}/v1/planning/decide", json={"session": "a b", "features": 1}
    )
    assert bad_session.status_code == 422 and "session" in bad_session.text
    assert httpx.post(f"{service}/v1/nowhere", json={}).status_code == 404
    assert httpx.delete(f"{service}/v1/sessions/never-made").status_code == 404
    planning = remote_modules(service, "planning")[0]
    with pytest.raises(ModuleError, match="400"):
        planning.decide([1, 2, 3])  # features the Q-table cannot index


# Bodies whose 422 quotes a value JSON cannot write: NaN, infinities, lone surrogates.
UNQUOTABLE = [
    ("/v1/agent/reset", b'{"session": "a", "seed": 1e400}', "seed"),
    ("/v1/agent/reset", b'{"session": NaN}', "session"),
    ("/v1/agent/step", b'{"session": "a", "actio": Infinity}', "action"),
    ("/v1/agent/reset", b'{"session": "\\ud800"}', "session"),
    ("/v1/agent/reset", b'{"session": "a", "\\udfff": 1}', "body"),
]


@pytest.mark.parametrize(("route", "body", "field"), UNQUOTABLE)
def test_a_422_quoting_what_json_cannot_write_is_still_a_422(
    service: str, route: str, body: bytes, field: str
) -> None:
    reply = httpx.post(f"{service}{route}", content=body,
                       headers={"content-type": "application/json"})  # fmt: skip
    assert reply.status_code == 422, reply.text
    assert field in json.dumps(reply.json()["detail"])


@pytest.mark.parametrize(
    "change",
    [
        {"action": -1},
        {"action": True},
        {"action": 6},
        {"reward": "NaN"},
        {"reward": "-Infinity"},
        {"next_features": 99_999},
    ],
    ids=["negative-action", "bool-action", "action-past-the-last", "nan", "infinity", "state"],
)
def test_a_transition_the_q_table_cannot_hold_is_refused_and_changes_nothing(
    service: str, change: dict[str, object]
) -> None:
    transition = {"observation": 0, "features": 0, "action": 2, "reward": 4.0,
                  "next_observation": 1, "next_features": 1, **change}  # fmt: skip
    raw = json.dumps({"session": "table", "transition": transition}).replace('"NaN"', "NaN")
    raw = raw.replace('"-Infinity"', "-Infinity")
    before = httpx.get(f"{service}/v1/sessions/table/qtable")
    reply = httpx.post(f"{service}/v1/learning/update", content=raw,
                       headers={"content-type": "application/json"})  # fmt: skip
    assert reply.status_code == 400, reply.text
    assert "learning" in reply.json()["detail"]
    after = httpx.get(f"{service}/v1/sessions/table/qtable")
    if before.status_code == 200:
        assert after.json()["values"] == before.json()["values"]
    good = {**transition, "action": 2, "reward": 4.0, "next_features": 1}
    assert httpx.post(f"{service}/v1/learning/update",
                      json={"session": "table", "transition": good}).status_code == 200  # fmt: skip


def test_health_metrics_and_openapi(service: str) -> None:
    # Its own call to count: under xdist the other tests of this module may run elsewhere.
    httpx.post(f"{service}/v1/planning/decide", json={"session": "metrics", "features": 0})
    assert httpx.get(f"{service}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{service}/readyz").json()["status"] == "ready"
    metrics = httpx.get(f"{service}/metrics").text
    assert "llmagentos_service_requests_total" in metrics
    assert 'route="/v1/planning/decide"' in metrics
    spec = httpx.get(f"{service}/openapi.json").json()
    assert {"/v1/planning/decide", "/v1/learning/update", "/v1/agent/step"} <= set(spec["paths"])


def test_a_bad_config_fails_before_listening(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[env]\nid = "Taxi-v3"\n')
    done = subprocess.run(
        [sys.executable, "-m", "llmagentos", "serve", str(bad), "--port", str(free_port())],
        check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert done.returncode == 2 and "Taxi-v4" in done.stderr


def test_one_client_serves_two_event_loops_and_closes_them(service: str) -> None:
    import asyncio

    from llmagentos.service import ServiceClient

    client = ServiceClient(service, session="two-loops")

    async def reset_and_perceive() -> tuple[object, object]:
        first = await client.apost("execution", "/v1/execution/reset", seed=0)
        features = await client.apost(
            "perception", "/v1/perception/perceive", observation=first["observation"]
        )
        return first["observation"], features["features"]

    one = asyncio.run(reset_and_perceive())
    two = asyncio.run(reset_and_perceive())  # a second loop: its own async client
    assert one == two
    (second,) = [entry[0] for entry in client._async.values()]  # the first one forgotten
    assert second.is_closed  # asyncio.run closed the loop's client as the loop shut down
    loop = asyncio.new_event_loop()  # a loop that is not shut down by asyncio.run
    try:
        assert loop.run_until_complete(reset_and_perceive()) == one
        left = client._async[loop][0]
        assert not left.is_closed
        client.close()
        assert left.is_closed and client._client.is_closed
    finally:
        loop.close()
