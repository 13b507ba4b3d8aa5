"""One trace for a Taxi episode: the agent's phases, an LLM planner's model and tool
calls through the kernel, and a remote learner over real HTTP, with parents intact."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmagentos import Agent
from llmagentos._processes import free_port, wait_ready
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.kernel.default import agent_model, kernel, reset_kernel
from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import ModelRequest, ModelResponse, ToolCall
from llmagentos.modules.llm_planning import LLMPlanningModule
from llmagentos.service import remote_modules
from llmagentos.telemetry import configure_telemetry
from llmagentos.tools import ToolRegistry, tool

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")
pytest.importorskip("opentelemetry.sdk", reason="needs llmagentos[telemetry]")

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"
TAXI_ACTIONS = ["south", "north", "east", "west", "pickup", "dropoff"]
STEPS = 3


def _taxi_llm(request: ModelRequest) -> str | ModelResponse:
    """Looks at the map first, then answers: a planner that calls a tool every decision."""
    if request.tools and not any(m.role == "tool" for m in request.messages):
        call = ToolCall(id="c1", name="taxi.where", arguments=json.dumps({"what": "passenger"}))
        return ModelResponse(tool_calls=(call,), finish_reason="tool_calls")
    return json.dumps({"reason": "the passenger is south", "action": "south"})


@tool(namespace="taxi")
def where(what: str) -> str:
    """Where something is on the map.

    Args:
        what: passenger or destination.
    """
    return f"the {what} is south"


@pytest.fixture
def learning_service() -> Iterator[str]:
    """The Taxi learner as a module service on a real port, served from this process
    (so its spans reach the same in-memory exporter)."""
    import uvicorn

    from llmagentos.service.app import service_app

    app = service_app(lambda: build_agent(load_config(CONFIG)), name="taxi", kinds=("learning",))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, timeout=20)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def _by_id(spans: list[Any]) -> dict[int, Any]:
    return {s.context.span_id: s for s in spans}


def _parent(span: Any, index: dict[int, Any]) -> Any:
    return index.get(span.parent.span_id) if span.parent is not None else None


def test_a_taxi_episode_is_one_trace_with_every_hop_under_its_step(learning_service: str) -> None:
    reset_kernel()
    telemetry = configure_telemetry("memory", record_content=True, service_name="taxi-test")
    kernel().add_backend("test:taxi", FunctionModel(_taxi_llm, model_id="test:taxi"))
    planner = LLMPlanningModule(
        agent_model("test:taxi", agent="taxi"), TAXI_ACTIONS, tools=ToolRegistry([where])
    )
    built = build_agent(load_config(CONFIG))
    (learning,) = remote_modules(learning_service, "learning")
    agent = Agent(
        built.agent.perception_module, planner, built.agent.execution_module, learning,
        name="taxi",
    )  # fmt: skip
    result = agent.run(1, seed=0, max_steps=STEPS)
    assert result.episodes[0].length == STEPS
    spans = telemetry.spans()
    index = _by_id(spans)
    names = [s.name for s in spans]

    # One trace, rooted at the episode.
    assert len({s.context.trace_id for s in spans}) == 1
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "invoke_agent taxi"
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["llmagentos.length"] == STEPS
    steps = [s for s in spans if s.name == "step"]
    assert len(steps) == STEPS and all(_parent(s, index) is root for s in steps)
    assert [s.attributes["llmagentos.step"] for s in steps] == [0, 1, 2]
    assert all(s.attributes["llmagentos.reason"].startswith("llm:") for s in steps)
    for phase in ("perceive", "plan", "execute", "learn"):
        found = [s for s in spans if s.name == phase]
        assert len(found) == STEPS and all(_parent(s, index).name == "step" for s in found)

    _check_model_and_tool_spans(spans, index)
    _check_remote_spans(spans, index)
    assert "reset" in names
    assert telemetry.stats()["spans_dropped"] == 0
    reset_kernel()


def _check_model_and_tool_spans(spans: list[Any], index: dict[int, Any]) -> None:
    # Model calls through the kernel: GenAI attributes, under the plan, with the queue.
    chats = [s for s in spans if s.name == "chat test:taxi"]
    # Every step: the turn that calls the tool, the turn that reads its result, and the
    # structured answer.
    assert len(chats) == 3 * STEPS
    for chat in chats:
        assert _parent(chat, index).name == "plan"
        attributes = chat.attributes
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "test"
        assert attributes["gen_ai.request.model"] == "test:taxi"
        assert attributes["gen_ai.agent.name"] == "taxi"
        assert attributes["gen_ai.usage.input_tokens"] >= 0
        assert attributes["llmagentos.cache.hit"] is False
        assert "gen_ai.input.messages" in attributes  # recording was opted into
    assert sum(chat.attributes["gen_ai.usage.input_tokens"] for chat in chats) > 0
    waits = [s for s in spans if s.name == "queue wait"]
    assert len(waits) == len(chats) and all(
        _parent(w, index).name.startswith("chat") for w in waits
    )

    # The tool call, between the model's two turns.
    tools = [s for s in spans if s.name == "execute_tool taxi.where"]
    assert len(tools) == STEPS
    assert all(_parent(t, index).name == "plan" for t in tools)
    assert tools[0].attributes["gen_ai.tool.name"] == "taxi.where"
    assert "the passenger is south" in tools[0].attributes["gen_ai.tool.call.result"]


def _check_remote_spans(spans: list[Any], index: dict[int, Any]) -> None:
    # The remote learner: a client span under learn, the service's span under it.
    clients = [s for s in spans if s.name == "POST /v1/learning/update" and s.kind.name == "CLIENT"]
    servers = [s for s in spans if s.name == "POST /v1/learning/update" and s.kind.name == "SERVER"]
    assert len(clients) == len(servers) == STEPS
    assert all(_parent(c, index).name == "learn" for c in clients)
    assert all(_parent(s, index) in clients for s in servers)
    assert all(s.attributes["http.response.status_code"] == 200 for s in servers)


def test_without_opt_in_no_prompt_or_reply_is_recorded() -> None:
    reset_kernel()
    telemetry = configure_telemetry("memory")
    kernel().add_backend("test:taxi", FunctionModel(_taxi_llm, model_id="test:taxi"))
    planner = LLMPlanningModule(
        agent_model("test:taxi", agent="taxi"), TAXI_ACTIONS, tools=ToolRegistry([where])
    )
    built = build_agent(load_config(CONFIG))
    agent = Agent(
        built.agent.perception_module, planner, built.agent.execution_module,
        built.agent.learning_module, name="taxi",
    )  # fmt: skip
    agent.run(1, seed=0, max_steps=2)
    for recorded in telemetry.spans():
        assert not {
            "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments",
            "gen_ai.tool.call.result",
        } & set(recorded.attributes), recorded.name  # fmt: skip
    reset_kernel()
