"""The Model interface: sync and async faces, structured output with repair, test doubles."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from llmagentos.exceptions import ModelError, ModelOutputError, UnknownModelError
from llmagentos.llm import (
    FunctionModel,
    Message,
    ModelRequest,
    ModelResponse,
    ScriptedModel,
    StreamEvent,
    Tool,
    ToolCall,
    Usage,
    collect_stream,
    make_model,
)
from llmagentos.llm.testing import NetworkBlockedError, allow_network_models, check_network_allowed


class Move(BaseModel):
    action: str
    reason: str


async def test_scripted_model_replies_in_order_and_records_requests() -> None:
    model = ScriptedModel(["hello", ToolCall(id="1", name="go", arguments='{"to": "north"}')])
    first = await model.achat("hi", system="be brief", temperature=0)
    assert first.text == "hello" and first.finish_reason == "stop"
    assert first.usage.prompt_tokens > 0
    second = await model.achat("move", tools=[Tool(name="go")])
    assert second.tool_calls[0].parsed_arguments() == {"to": "north"}
    assert [m.role for m in model.requests[0].messages] == ["system", "user"]
    assert model.requests[0].settings.temperature == 0
    model.assert_all_used()
    with pytest.raises(ModelError, match="ran out of replies: call 3 but only 2"):
        await model.achat("again")


def test_scripted_model_complains_about_unused_replies_and_raises_scripted_errors() -> None:
    model = ScriptedModel([ModelError("backend down"), "never asked"])
    with pytest.raises(ModelError, match="backend down"):
        model.chat("x")
    with pytest.raises(AssertionError, match="1 scripted replies unused"):
        model.assert_all_used()


async def test_function_model_computes_each_reply_sync_or_async() -> None:
    def echo(request: ModelRequest) -> str:
        return (request.messages[-1].content or "").upper()

    async def slow(request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(0)
        return ModelResponse(text="ok", usage=Usage(prompt_tokens=3, completion_tokens=1))

    assert (await FunctionModel(echo).achat("abc")).text == "ABC"
    assert FunctionModel(slow).chat("x").usage.total_tokens == 4


async def test_structured_output_validates_and_repairs_with_the_error_fed_back() -> None:
    model = ScriptedModel(['{"action": "north"}', '{"action": "north", "reason": "dock"}'])
    move = await model.agenerate("where?", Move)
    assert move == Move(action="north", reason="dock")
    retry = model.requests[1].messages
    assert retry[-1].role == "user" and "reason" in (retry[-1].content or "")
    assert "Field required" in (retry[-1].content or "")
    assert model.requests[0].output_schema == Move.model_json_schema()


async def test_structured_output_gives_up_with_a_typed_error_listing_each_attempt() -> None:
    model = ScriptedModel(["not json", "{}", '{"action": 1}'])
    with pytest.raises(ModelOutputError) as caught:
        await model.agenerate("where?", Move, repairs=2)
    assert len(caught.value.errors) == 3
    assert "3 attempts" in str(caught.value)


async def test_structured_output_against_a_json_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    model = ScriptedModel(['{"n": "seven"}', '{"n": 7}'])
    assert await model.agenerate("count", schema) == {"n": 7}
    assert "at n:" in (model.requests[1].messages[-1].content or "")


def test_malformed_tool_arguments_are_a_typed_error() -> None:
    with pytest.raises(ModelOutputError, match="malformed arguments"):
        ToolCall(id="1", name="go", arguments="{to: north").parsed_arguments()
    with pytest.raises(ModelOutputError, match="JSON object"):
        ToolCall(id="1", name="go", arguments="[1]").parsed_arguments()


def test_sync_stream_yields_events_as_they_come() -> None:
    class Counting(ScriptedModel):
        async def astream(self, request: ModelRequest) -> Any:
            for word in ("a", "b", "c"):
                await asyncio.sleep(0)
                yield StreamEvent(text=word)
            yield StreamEvent(finish_reason="stop", usage=Usage(completion_tokens=3))

    events = list(Counting([]).stream(ModelRequest(messages=(Message.user("x"),))))
    assert [e.text for e in events] == ["a", "b", "c", ""]
    response = collect_stream(events)
    assert (response.text, response.finish_reason, response.usage.completion_tokens) == (
        "abc",
        "stop",
        3,
    )


def test_unknown_model_ids_list_what_is_available() -> None:
    for bad in ("gpt-4", "nope:thing", "local:"):
        with pytest.raises(UnknownModelError) as caught:
            make_model(bad)
        assert "local:smollm2" in caught.value.available
        assert "openai:<model>" in str(caught.value)


def test_network_guard_blocks_until_a_test_opts_in() -> None:
    with pytest.raises(NetworkBlockedError, match="allow_network_models"):
        check_network_allowed("openai:gpt-4o-mini")
    with allow_network_models():
        check_network_allowed("openai:gpt-4o-mini")
    with pytest.raises(NetworkBlockedError):
        check_network_allowed("openai:gpt-4o-mini")


def test_request_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="messages"):
        ModelRequest(messages=())
    with pytest.raises(ValueError, match="temperature"):
        ScriptedModel(["x"]).chat("hi", temperature=5)
