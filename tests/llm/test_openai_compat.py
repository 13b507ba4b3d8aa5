"""OpenAICompatModel: the wire format (MockTransport) and failures (a real loopback server)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, cast

import httpx
import pytest

from llmagentos.exceptions import (
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelOutputError,
    ModelTimeoutError,
)
from llmagentos.llm import collect_stream
from llmagentos.llm.openai_compat import OpenAICompatModel, parse_retry_after
from llmagentos.llm.testing import NetworkBlockedError, allow_network_models
from llmagentos.llm.types import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamEvent,
    Tool,
    ToolCall,
)
from tests.llm import fault_server as fs

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[httpx.Request], httpx.Response]
WEATHER = Tool(
    name="get_weather",
    description="Weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def mock_model(handler: Handler, **kwargs: Any) -> OpenAICompatModel:
    kwargs.setdefault("model_id", "test:mock")
    return OpenAICompatModel(
        "m", base_url="http://mock/v1/", transport=httpx.MockTransport(handler), **kwargs
    )


def recording(response: httpx.Response | None = None) -> tuple[Handler, list[httpx.Request]]:
    """A handler that records requests and answers with ``response`` (a completion)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response or httpx.Response(200, json=fs.completion_json("hi"))

    return handler, seen


def replying(
    body: Any = None,
    *,
    status: int = 200,
    content: bytes | None = None,
    content_type: str | None = None,
    retry_after: str | None = None,
) -> Handler:
    headers = {"content-type": content_type} if content_type else {}
    if retry_after is not None:
        headers["retry-after"] = retry_after

    def handler(request: httpx.Request) -> httpx.Response:
        if content is not None:
            return httpx.Response(status, content=content, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def raising(error: type[httpx.RequestError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    return handler


def sse(*events: bytes) -> Handler:
    return replying(content=b"".join(events), content_type="text/event-stream")


def ask(text: str = "hi", **kwargs: Any) -> ModelRequest:
    return ModelRequest(messages=(Message.user(text),), **kwargs)


async def events_of(
    model: OpenAICompatModel, request: ModelRequest, into: list[str] | None = None
) -> list[StreamEvent]:
    """All events of a stream; their texts also go to ``into`` as they arrive."""
    events = []
    async for event in model.astream(request):
        events.append(event)
        if into is not None:
            into.append(event.text)
    return events


# -- the request body ----------------------------------------------------------------------


async def test_body_carries_the_conversation_with_tool_calls_and_results() -> None:
    handler, seen = recording()
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Oslo"}')
    request = ModelRequest(
        messages=(
            Message.system("be brief"),
            Message.user("weather?"),
            Message.assistant(None, (call,)),
            Message.tool("rainy", tool_call_id="call_1", name="get_weather"),
        ),
        settings=ModelSettings(temperature=0, max_tokens=20, top_p=0.5, seed=7, stop=("\n",)),
    )
    await mock_model(handler).arequest(request)

    assert seen[0].url == "http://mock/v1/chat/completions"
    body = json.loads(seen[0].content)
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "content": "rainy", "tool_call_id": "call_1"},
        ],
        "temperature": 0,
        "max_tokens": 20,
        "top_p": 0.5,
        "seed": 7,
        "stop": ["\n"],
    }


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("get_weather", {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_body_tools_and_tool_choice(choice: str, wire: Any) -> None:
    body = mock_model(recording()[0]).build_body(ask(tools=(WEATHER,), tool_choice=choice))
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert body["tool_choice"] == wire


def test_body_without_tools_sends_no_tool_keys_or_unset_settings() -> None:
    body = mock_model(recording()[0]).build_body(ask())
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_body_response_format_json_schema_and_json_object() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    request = ask(output_schema=schema, output_name="Count Result")
    body = mock_model(recording()[0]).build_body(request)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Count_Result", "schema": schema, "strict": True},
    }
    legacy = mock_model(recording()[0], structured_output="json_object").build_body(request)
    assert legacy["response_format"] == {"type": "json_object", "schema": schema}


def test_extra_body_fields_are_added_but_never_replace_the_requests_own() -> None:
    model = mock_model(recording()[0], extra_body={"repeat_penalty": 1.0, "temperature": 9})
    body = model.build_body(ask(settings={"temperature": 0.2}))
    assert body["repeat_penalty"] == 1.0 and body["temperature"] == 0.2
    assert model.build_body(ask())["temperature"] == 9  # unset by the request: the extra's


def test_stream_body_asks_for_usage() -> None:
    body = mock_model(recording()[0]).build_body(ask(), stream=True)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


# -- headers -------------------------------------------------------------------------------


async def test_no_key_means_no_authorization_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    handler, seen = recording()
    await mock_model(handler).arequest(ask())
    assert "authorization" not in seen[0].headers
    assert seen[0].headers["accept"] == "application/json"


async def test_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OTHER_KEY", "sk-other")
    handler, seen = recording()
    await mock_model(handler).arequest(ask())
    await mock_model(handler, api_key_env="OTHER_KEY").arequest(ask())
    await mock_model(handler, api_key="sk-given").arequest(ask())
    await mock_model(handler, headers={"Authorization": "Token x", "X-A": "1"}).arequest(ask())
    auth = [request.headers.get("authorization") for request in seen]
    assert auth == ["Bearer sk-env", "Bearer sk-other", "Bearer sk-given", "Token x"]
    assert seen[3].headers["x-a"] == "1"
    assert "sk-env" not in repr(mock_model(handler))


# -- replies -------------------------------------------------------------------------------


async def test_reply_text_usage_and_finish_reason() -> None:
    handler = replying(fs.completion_json("Paris", usage=(11, 3)))
    response = await mock_model(handler).arequest(ask())
    assert response == ModelResponse(
        text="Paris",
        usage=response.usage,
        finish_reason="stop",
        model="test:mock",
    )
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (11, 3)


async def test_reply_tool_calls_parse_their_arguments() -> None:
    calls = [
        {"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        # Older Ollama sends an object and no id.
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
    ]  # fmt: skip
    body = fs.completion_json("", tool_calls=calls, finish_reason="tool_calls")
    response = await mock_model(replying(body)).arequest(ask(tools=(WEATHER,)))
    assert response.text is None
    assert response.finish_reason == "tool_calls"
    assert [c.id for c in response.tool_calls] == ["c1", "call_1"]
    assert [c.parsed_arguments() for c in response.tool_calls] == [
        {"city": "Oslo"},
        {"city": "Rome"},
    ]


async def test_malformed_tool_arguments_fail_when_parsed_not_when_received() -> None:
    calls = [{"id": "c1", "function": {"name": "get_weather", "arguments": '{"city": '}}]
    response = await mock_model(replying(fs.completion_json(None, tool_calls=calls))).arequest(
        ask()
    )
    with pytest.raises(ModelOutputError, match="malformed arguments"):
        response.tool_calls[0].parsed_arguments()


async def test_content_parts_and_missing_usage_are_accepted() -> None:
    body = {"choices": [{"message": {"content": [{"type": "text", "text": "a"},
                                                 {"type": "text", "text": "b"}]}}]}  # fmt: skip
    response = await mock_model(replying(body)).arequest(ask())
    assert response.text == "ab"
    assert response.usage.total_tokens == 0
    assert response.finish_reason is None


# -- streaming -----------------------------------------------------------------------------


async def test_stream_yields_text_deltas_then_a_final_event() -> None:
    events = await events_of(mock_model(sse(*fs.sse_body(["Hel", "lo", "!"]))), ask())
    assert [e.text for e in events] == ["Hel", "lo", "!", ""]
    final = events[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens == 2
    assert collect_stream(events).text == "Hello!"


async def test_stream_assembles_interleaved_tool_call_deltas_by_index() -> None:
    def delta(index: int, **function: str) -> dict[str, Any]:
        part: dict[str, Any] = {"index": index, "function": function}
        if "name" in function:
            part.update(id=f"call_{index}x", type="function")
        return part

    parts = [
        delta(0, name="get_weather", arguments=""),
        delta(1, name="get_weather", arguments='{"ci'),
        delta(0, arguments='{"city": '),
        delta(1, arguments='ty": "Rome"}'),
        delta(0, arguments='"Oslo"}'),
    ]
    body = fs.sse_body([], tool_calls=parts, finish_reason="tool_calls")
    events = await events_of(mock_model(sse(*body)), ask(tools=(WEATHER,)))
    assert len(events) == 1
    calls = events[0].tool_calls
    assert [(c.id, c.name) for c in calls] == [
        ("call_0x", "get_weather"),
        ("call_1x", "get_weather"),
    ]
    assert [c.parsed_arguments() for c in calls] == [{"city": "Oslo"}, {"city": "Rome"}]
    assert events[0].finish_reason == "tool_calls"


async def test_stream_tolerates_comments_crlf_and_split_data_lines() -> None:
    body = (
        b": keep-alive\r\n\r\n"
        b'data: {"choices": [{"index": 0,\r\ndata: "delta": {"content": "ok"}}]}\r\n\r\n'
        b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}\r\n\r\n'
    )  # no [DONE]: a finish reason is enough to call the stream complete
    events = await events_of(mock_model(sse(body)), ask())
    assert [e.text for e in events] == ["ok", ""]
    assert events[-1].finish_reason == "length"


async def test_stream_accepts_a_whole_json_reply_from_a_server_that_ignores_stream() -> None:
    events = await events_of(mock_model(replying(fs.completion_json("whole"))), ask())
    assert [(e.text, e.finish_reason) for e in events] == [("whole", "stop")]


def test_sync_stream_and_request_work_repeatedly() -> None:
    model = mock_model(sse(*fs.sse_body(["a", "b"])))
    for _ in range(3):
        assert collect_stream(model.stream(ask())).text == "ab"
    model = mock_model(replying(fs.completion_json("x")))
    assert [model.request(ask()).text for _ in range(3)] == ["x", "x", "x"]


# -- error mapping (MockTransport) ---------------------------------------------------------


@pytest.mark.parametrize("code", [400, 401, 404, 500, 503])
async def test_http_errors_keep_status_and_body(code: int) -> None:
    handler = replying({"error": {"message": "nope"}}, status=code)
    with pytest.raises(ModelHTTPError) as info:
        await mock_model(handler).arequest(ask())
    assert info.value.status_code == code
    assert "nope" in info.value.body
    assert info.value.retry_after is None
    assert str(info.value).startswith(f"test:mock: HTTP {code}")


async def test_http_error_in_a_stream_request() -> None:
    handler = replying({"error": {"message": "slow down"}}, status=429, retry_after="3")
    with pytest.raises(ModelHTTPError) as info:
        await events_of(mock_model(handler), ask())
    assert (info.value.status_code, info.value.retry_after) == (429, 3.0)


@pytest.mark.parametrize(
    ("handler", "error", "match"),
    [
        (raising(httpx.ConnectError), ModelConnectionError, "ConnectError"),
        (raising(httpx.RemoteProtocolError), ModelConnectionError, "RemoteProtocolError"),
        (raising(httpx.ReadError), ModelConnectionError, "ReadError"),
        (raising(httpx.ReadTimeout), ModelTimeoutError, "ReadTimeout"),
        (raising(httpx.ConnectTimeout), ModelTimeoutError, "ConnectTimeout"),
        (replying(content=b"{oops", content_type="application/json"), ModelOutputError,
         "not valid JSON"),
        (replying(content=b"<html/>", content_type="text/html"), ModelOutputError,
         "text/html"),
        (replying({"id": "x"}), ModelOutputError, "no choices"),
        (replying({"choices": []}), ModelOutputError, "no choices"),
        (replying({"error": {"message": "bad model"}}), ModelOutputError, "bad model"),
        (replying([1, 2]), ModelOutputError, "not a JSON object"),
    ],
)  # fmt: skip
async def test_failures_become_typed_errors_naming_the_model(
    handler: Handler, error: type[ModelError], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        await mock_model(handler).arequest(ask())
    assert info.value.model == "test:mock"
    assert str(info.value).startswith("test:mock: ")


@pytest.mark.parametrize(
    ("events", "error", "match"),
    [
        (fs.sse_body(["a"], done=False, usage=None)[:-1], ModelConnectionError, "truncated"),
        ([b'data: {"choices": [{"delta": {"content": "a"}}]}\n\ndata: {"choi'],
         ModelConnectionError, "truncated"),
        ([b'data: {"error": {"message": "overloaded"}}\n\n'], ModelConnectionError, "overloaded"),
        ([b"event: error\ndata: gone\n\n"], ModelConnectionError, "gone"),
        ([b"data: {not json}\n\n"], ModelOutputError, "not valid JSON"),
    ],
)  # fmt: skip
async def test_stream_failures(events: list[bytes], error: type[ModelError], match: str) -> None:
    with pytest.raises(error, match=match):
        await events_of(mock_model(sse(*events)), ask())


async def test_stream_with_a_wrong_content_type_is_an_output_error() -> None:
    handler = replying(content=b"<html/>", content_type="text/html")
    with pytest.raises(ModelOutputError, match="expected an event stream"):
        await events_of(mock_model(handler), ask())


async def test_network_guard_applies_only_without_a_custom_transport() -> None:
    model = OpenAICompatModel("m", base_url="http://127.0.0.1:9/v1", model_id="test:guarded")
    with pytest.raises(NetworkBlockedError):
        await model.arequest(ask())
    with pytest.raises(NetworkBlockedError):
        await events_of(model, ask())
    await mock_model(recording()[0]).arequest(ask())  # a transport: no guard


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("7", 7.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None),
     ("nan", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)  # fmt: skip
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_future_http_date() -> None:
    header = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = parse_retry_after(header)
    assert seconds is not None and 27 <= seconds <= 30


class CountingTransport(httpx.MockTransport):
    def __init__(self, handler: Handler) -> None:
        super().__init__(handler)
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def test_each_sync_call_closes_its_loops_client() -> None:
    # The sync face runs each call on a fresh loop; the loop's shutdown closes the client
    # (and so its pooled keep-alive connections) without an explicit close().
    transport = CountingTransport(recording()[0])
    model = OpenAICompatModel("m", base_url="http://mock/v1", transport=transport)
    model.request(ask())
    model.request(ask())
    assert transport.closed == 2


async def test_aclose_closes_the_client_and_a_later_call_opens_a_new_one() -> None:
    transport = CountingTransport(recording()[0])
    model = OpenAICompatModel("m", base_url="http://mock/v1", transport=transport)
    await model.arequest(ask())
    await model.aclose()
    await model.aclose()  # twice is fine
    assert transport.closed == 1
    assert (await model.arequest(ask())).text == "hi"
    await model.aclose()
    assert transport.closed == 2


# -- against a real loopback server --------------------------------------------------------


@pytest.fixture
def network() -> Iterator[None]:
    with allow_network_models():
        yield


def served(server: fs.FaultServer, **kwargs: Any) -> OpenAICompatModel:
    return OpenAICompatModel("m", base_url=server.url, model_id="test:fault", **kwargs)


@pytest.mark.usefixtures("network")
class TestAgainstFaultServer:
    async def test_scripted_sequence_and_request_log(self) -> None:
        script = [fs.status(503), fs.status(500), fs.chat("fine"), fs.stream(["s", "t"])]
        async with fs.FaultServer(script) as server:
            model = served(server)
            for code in (503, 500):
                with pytest.raises(ModelHTTPError) as info:
                    await model.arequest(ask())
                assert info.value.status_code == code
            assert (await model.arequest(ask())).text == "fine"
            events = await events_of(model, ask())
            assert collect_stream(events).text == "st"
            await model.aclose()
        assert server.count == 4
        assert server.requests[0].path == "/v1/chat/completions"
        assert server.requests[3].json()["stream"] is True

    @pytest.mark.parametrize(
        ("retry_after", "low", "high"),
        [("2", 2.0, 2.0), ("0.25", 0.25, 0.25), (None, 5.0, 5.0)],
    )
    async def test_429_carries_retry_after(
        self, retry_after: str | None, low: float, high: float
    ) -> None:
        header = retry_after or email.utils.formatdate(time.time() + 5, usegmt=True)
        async with fs.FaultServer([fs.rate_limited(header)]) as server:
            with pytest.raises(ModelHTTPError) as info:
                await served(server).arequest(ask())
        assert info.value.status_code == 429
        assert info.value.retry_after is not None
        assert low - 1.5 <= info.value.retry_after <= high
        assert "rate limited" in info.value.body

    @pytest.mark.parametrize("how", ["settings", "model"])
    async def test_a_hang_ends_at_the_deadline(self, how: str) -> None:
        deadline = 0.8
        async with fs.FaultServer([fs.hang()]) as server:
            if how == "settings":
                model = served(server)
                request = ask(settings=ModelSettings(timeout=deadline))
            else:
                model, request = served(server, timeout=deadline), ask()
            start = time.monotonic()
            with pytest.raises(ModelTimeoutError, match="deadline"):
                await model.arequest(request)
            elapsed = time.monotonic() - start
            await model.aclose()
        assert deadline - 0.05 <= elapsed < deadline + 1.0

    async def test_a_hung_stream_ends_at_the_deadline(self) -> None:
        async with fs.FaultServer([fs.hang()]) as server:
            start = time.monotonic()
            with pytest.raises(ModelTimeoutError):
                await events_of(served(server, timeout=0.8), ask())
        assert time.monotonic() - start < 0.8 + 1.0

    async def test_read_timeout_without_a_deadline(self) -> None:
        async with fs.FaultServer([fs.hang()]) as server:
            start = time.monotonic()
            with pytest.raises(ModelTimeoutError, match="ReadTimeout"):
                await served(server, read_timeout=0.5).arequest(ask())
        assert time.monotonic() - start < 0.5 + 1.0

    async def test_a_slow_trickle_is_cut_at_the_deadline(self) -> None:
        # Every read succeeds within the read timeout; only the overall deadline stops it.
        async with fs.FaultServer([fs.trickle()]) as server:
            model = served(server, read_timeout=5.0)
            received: list[str] = []
            start = time.monotonic()
            with pytest.raises(ModelTimeoutError):
                await events_of(model, ask(settings=ModelSettings(timeout=1.5)), received)
            elapsed = time.monotonic() - start
        assert received  # some text arrived before the deadline
        assert 1.5 - 0.05 <= elapsed < 1.5 + 1.0

    async def test_a_truncated_stream_is_a_connection_error(self) -> None:
        async with fs.FaultServer([fs.truncated_stream()]) as server:
            received: list[str] = []
            with pytest.raises(ModelConnectionError, match="truncated"):
                await events_of(served(server), ask(), received)
        assert received == ["Hel", "lo"]

    @pytest.mark.parametrize(
        ("behaviour", "error", "match"),
        [
            (fs.invalid_json(), ModelOutputError, "not valid JSON"),
            (fs.wrong_content_type(), ModelOutputError, "text/html"),
            (fs.disconnect(), ModelConnectionError, "RemoteProtocolError"),
            (fs.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"ch"),
             ModelConnectionError, "RemoteProtocolError"),
        ],
    )  # fmt: skip
    async def test_broken_replies(
        self, behaviour: fs.Behaviour, error: type[ModelError], match: str
    ) -> None:
        async with fs.FaultServer([behaviour]) as server:
            with pytest.raises(error, match=match) as info:
                await served(server).arequest(ask())
        assert info.value.model == "test:fault"

    async def test_connection_refused(self) -> None:
        async with fs.FaultServer([fs.chat()]) as server:
            url = server.url
        model = OpenAICompatModel("m", base_url=url, model_id="test:fault")
        with pytest.raises(ModelConnectionError, match="ConnectError"):
            await model.arequest(ask())

    async def test_leaving_a_stream_early_closes_it(self) -> None:
        async with fs.FaultServer([fs.stream(["a", "b", "c"], delay=0.05)]) as server:
            model = served(server)
            stream = cast(AsyncGenerator[StreamEvent, None], model.astream(ask()))
            first = await anext(stream)
            await stream.aclose()
            await model.aclose()
        assert first.text == "a"

    async def test_the_client_does_not_retry(self) -> None:
        async with fs.FaultServer([fs.disconnect()]) as server:
            with pytest.raises(ModelConnectionError):
                await served(server).arequest(ask())
            await asyncio.sleep(0.05)
        assert server.count == 1


@pytest.mark.usefixtures("network")
def test_sync_request_works_repeatedly_over_real_sockets() -> None:
    # Each sync call runs on a fresh event loop; a pooled connection of the previous,
    # closed loop must not be reused.
    with fs.FaultServer([fs.chat("again")]).in_thread() as server:
        model = served(server)
        assert [model.request(ask()).text for _ in range(3)] == ["again"] * 3
        assert collect_stream(served(server).stream(ask())).text == "again"
        model.close()
    assert server.count == 4
