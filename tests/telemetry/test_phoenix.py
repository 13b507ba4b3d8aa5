"""A real trace viewer receives one episode's trace from three processes.

Phoenix (``arize-phoenix``) serves its UI and an OTLP endpoint offline. The agent runs
here with its planner and learner behind a real gateway, in a real module service;
all three export over OTLP to Phoenix, which must hold one trace whose parent links
cross the process boundaries: step -> learn -> client hop -> gateway -> service.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos import Agent
from llmagentos._processes import free_port, start_server, wait_ready
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.service import remote_modules
from llmagentos.telemetry import configure_telemetry, shutdown_telemetry

pytest.importorskip("phoenix", reason="needs arize-phoenix (the dev extra)")
pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

TAXI = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"
STEPS = 3


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_WORKING_DIR": str(tmp_path_factory.mktemp("phoenix")),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "phoenix.server.main", "serve"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process=process, timeout=120, path="/healthz")
    except BaseException:
        process.kill()
        raise
    yield url
    process.terminate()
    process.wait(timeout=20)


def _spans(phoenix: str, trace_id: str, expected: int) -> list[dict[str, Any]]:
    """The trace's spans as Phoenix holds them (it ingests asynchronously)."""
    deadline = time.monotonic() + 30
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        reply = httpx.get(f"{phoenix}/v1/projects/default/spans", params={"limit": 1000})
        reply.raise_for_status()
        found = [s for s in reply.json()["data"] if s["context"]["trace_id"] == trace_id]
        if len(found) >= expected:
            return found
        time.sleep(0.5)
    return found


def _root(phoenix: str, name: str) -> dict[str, Any]:
    """The span called ``name``, once Phoenix has ingested it (asynchronously)."""
    deadline = time.monotonic() + 30
    while True:
        reply = httpx.get(f"{phoenix}/v1/projects/default/spans", params={"limit": 1000})
        reply.raise_for_status()
        found = [s for s in reply.json()["data"] if s["name"] == name]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"Phoenix holds no span {name!r} after 30 s"
        time.sleep(0.5)


def test_phoenix_holds_one_trace_across_the_agent_the_gateway_and_the_service(
    phoenix: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "LLMAGENTOS_TELEMETRY": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix,
    }
    service, service_url = start_server(["llmagentos", "serve", str(TAXI)], env=env)
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[gateway]\nhealth_interval = 0\n\n"
        f'[[services]]\nname = "taxi"\nreplicas = ["{service_url}"]\n'
    )
    gateway, gateway_url = start_server(["llmagentos", "gateway", str(config)], env=env)
    try:
        telemetry = configure_telemetry("otlp", endpoint=phoenix, service_name="driver")
        built = build_agent(load_config(TAXI))
        planning, learning = remote_modules(f"{gateway_url}/taxi", "planning", "learning")
        agent = Agent(
            built.agent.perception_module, planning, built.agent.execution_module, learning,
            name="taxi",
        )  # fmt: skip
        agent.run(1, seed=0, max_steps=STEPS)
        assert telemetry.flush()
        stats = shutdown_telemetry()
        assert stats is not None and stats["spans_exported"] == stats["spans_ended"]
    finally:
        for process in (gateway, service):
            process.terminate()  # flushes their exporters on the way out
            process.wait(timeout=20)

    episode = _root(phoenix, "invoke_agent taxi")
    trace_id = episode["context"]["trace_id"]
    # Per step: step, 4 phases, 2 client hops (plan, learn), 2 gateway and 2 service spans.
    spans = _spans(phoenix, trace_id, 2 + STEPS * 11)
    by_id = {s["context"]["span_id"]: s for s in spans}

    def parent(span: dict[str, Any]) -> dict[str, Any] | None:
        return by_id.get(span["parent_id"]) if span["parent_id"] else None

    hops = [s for s in spans if s["name"].endswith("/v1/learning/update")]  # gateway: /taxi/...
    # One span per process per hop: the agent's client span, the gateway's and the
    # service's server spans, each the child of the one before.
    seen = sorted((s["name"], s["attributes"].get("llmagentos.service", "")) for s in spans)
    assert len(hops) == 3 * STEPS, seen
    services = [
        s for s in hops if s["attributes"].get("llmagentos.service", "").endswith("module service")
    ]
    assert len(services) == STEPS
    for served in services:
        at_gateway = parent(served)
        assert (
            at_gateway is not None and at_gateway["attributes"]["llmagentos.service"] == "gateway"
        )
        client = parent(at_gateway)
        assert client is not None and "llmagentos.service" not in client["attributes"]
        learn = parent(client)
        assert learn is not None and learn["name"] == "learn"
        step = parent(learn)
        assert step is not None and step["name"] == "step" and parent(step) == episode
    assert all(s["parent_id"] is None or s["parent_id"] in by_id for s in spans)
