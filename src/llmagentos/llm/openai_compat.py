"""A client for OpenAI-compatible chat servers: OpenAI, vLLM, Ollama, llama.cpp, LiteLLM.

One ``POST {base_url}/chat/completions`` per call, plain or streamed (SSE). The class never
retries: a retry wrapper decides that from the typed errors, which are all made by
:func:`_translate_error`:

==========================================================  ==========================
failure                                                      error
==========================================================  ==========================
refused / reset / closed connection, stream cut before       ``ModelConnectionError``
``[DONE]`` or a finish reason, an error event mid-stream
httpx's connect/read timeouts, the call's overall deadline   ``ModelTimeoutError``
HTTP status outside 2xx                                       ``ModelHTTPError``
200 with invalid JSON, a wrong content type, no ``choices``  ``ModelOutputError``
==========================================================  ==========================

A truncated stream is a connection error (the same request may well succeed next time);
a complete but malformed reply is an output error (the server means it).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from llmagentos._version import __version__
from llmagentos.exceptions import (
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelOutputError,
    ModelTimeoutError,
)
from llmagentos.llm.base import Model
from llmagentos.llm.sse import (
    BadReply,
    BrokenStream,
    ChatStream,
    SSEDecoder,
    arguments_text,
    content_text,
    error_text,
    excerpt,
    usage_from,
)
from llmagentos.llm.testing import check_network_allowed
from llmagentos.llm.types import (
    Message,
    ModelRequest,
    ModelResponse,
    StreamEvent,
    Tool,
    ToolCall,
    ToolChoice,
)

__all__ = ["OpenAICompatModel", "StructuredOutput", "parse_retry_after"]

StructuredOutput = Literal["json_schema", "json_object"]
"""How ``output_schema`` is sent: OpenAI's ``json_schema`` response format, or
``json_object`` with a ``schema`` key (llama-cpp-python's server, Anyscale)."""

_ERROR_BODY_LIMIT = 16_384  # bytes of an error body read at most


class _HTTPStatus(Exception):
    """A non-2xx answer (-> ModelHTTPError)."""

    def __init__(self, status: int, body: str, retry_after: str | None) -> None:
        super().__init__(status)
        self.status, self.body, self.retry_after = status, body, retry_after


_LoopClient = tuple[httpx.AsyncClient, AsyncGenerator[None, None]]
_WIRE_ERRORS = (httpx.HTTPError, OSError, BadReply, BrokenStream, _HTTPStatus)


class OpenAICompatModel(Model):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        model: the model name the server knows (``gpt-4o-mini``, ``llama3.2``, ...).
        base_url: the API root, e.g. ``https://api.openai.com/v1``.
        model_id: the id used in errors and responses (default ``{base_url}#{model}``).
        api_key: sent as ``Authorization: Bearer``; default: the ``api_key_env`` variable.
            No key means no header (fine for local servers).
        connect_timeout, read_timeout: httpx's per-connect and per-read limits.
        timeout: the overall deadline of a call, streaming included, unless the
            request's ``settings.timeout`` sets one.
        headers: extra headers (they override the defaults, ``Authorization`` too).
        transport: an httpx transport (tests pass ``httpx.MockTransport``); with one, the
            test-suite network guard is not consulted.
        structured_output: how ``output_schema`` is sent (see :data:`StructuredOutput`).
        extra_body: server-specific fields added to every request body, e.g.
            ``{"repeat_penalty": 1.0}`` for llama.cpp's server (whose default, 1.1,
            differs from the embedded model's 1.0). They never replace the fields the
            request itself sets.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        model_id: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        structured_output: StructuredOutput = "json_schema",
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id or f"{self.base_url}#{model}"
        self.timeout = timeout
        self.structured_output: StructuredOutput = structured_output
        self.extra_body = dict(extra_body or {})
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        self._headers = {"User-Agent": f"llmagentos/{__version__}"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._headers.update(headers or {})
        self._timeouts = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._transport = transport
        # One client per event loop: its pooled connections belong to the loop that opened
        # them, and the sync face runs every call on a fresh loop (asyncio.run). Beside
        # each client, the generator that closes it when that loop shuts down.
        self._clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}

    # -- the two calls ---------------------------------------------------------------------

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        seconds, deadline = self._deadline(request)
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._open(request, stream=False)
                try:
                    raw = await response.aread()
                finally:
                    await response.aclose()
            return _parse_completion(_json_body(response, raw), self.model_id)
        except _WIRE_ERRORS as err:
            raise _translate_error(err, self.model_id, self.base_url, seconds) from err

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        seconds, deadline = self._deadline(request)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._open(request, stream=True)
            try:
                if "json" in response.headers.get("content-type", ""):
                    # Some servers and proxies ignore ``stream``: one whole reply is fine.
                    async with asyncio.timeout_at(deadline):
                        raw = await response.aread()
                    whole = _parse_completion(_json_body(response, raw), self.model_id)
                    final = StreamEvent(
                        text=whole.text or "",
                        tool_calls=whole.tool_calls,
                        finish_reason=whole.finish_reason,
                        usage=whole.usage,
                    )
                else:
                    await _expect_event_stream(response, deadline)
                    state, decoder = ChatStream(), SSEDecoder()
                    lines = response.aiter_lines()
                    while not state.done:
                        # A timeout scope per read, never across a yield: the deadline
                        # must not fire inside the consumer's code.
                        if deadline is not None and loop.time() >= deadline:
                            raise TimeoutError
                        async with asyncio.timeout_at(deadline):
                            line = await anext(lines, None)
                        if line is None:
                            break
                        event = decoder.feed(line)
                        text = state.feed(event) if event is not None else ""
                        if text:
                            yield StreamEvent(text=text)
                    final = state.final()
            finally:
                await response.aclose()
            yield final
        except _WIRE_ERRORS as err:
            raise _translate_error(err, self.model_id, self.base_url, seconds) from err

    async def aclose(self) -> None:
        """Close this event loop's client; forget those of loops that are closed."""
        entry = self._clients.pop(asyncio.get_running_loop(), None)
        self._prune()
        if entry is not None:
            await entry[1].aclose()  # runs its finally: closes the client

    # -- the request -----------------------------------------------------------------------

    def build_body(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_wire_message(message) for message in request.messages],
        }
        if request.tools:
            body["tools"] = [_wire_tool(tool) for tool in request.tools]
            body["tool_choice"] = _wire_tool_choice(request.tool_choice)
        if request.output_schema is not None:
            body["response_format"] = self._response_format(request)
        settings = request.settings
        for key in ("temperature", "max_tokens", "top_p", "seed"):
            value = getattr(settings, key)
            if value is not None:
                body[key] = value
        if settings.stop:
            body["stop"] = list(settings.stop)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        for key, value in self.extra_body.items():
            body.setdefault(key, value)
        return body

    def _response_format(self, request: ModelRequest) -> dict[str, Any]:
        schema = request.output_schema
        if self.structured_output == "json_object":
            return {"type": "json_object", "schema": schema}
        # OpenAI accepts only [A-Za-z0-9_-]{1,64} as a schema name.
        name = re.sub(r"[^A-Za-z0-9_-]", "_", request.output_name)[:64] or "output"
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        }

    def _deadline(self, request: ModelRequest) -> tuple[float | None, float | None]:
        """The call's time budget in seconds and its absolute end on the loop's clock."""
        seconds = request.settings.timeout or self.timeout
        if seconds is None:
            return None, None
        return seconds, asyncio.get_running_loop().time() + seconds

    async def _open(self, request: ModelRequest, *, stream: bool) -> httpx.Response:
        """Send the request; return the (unread) response of a 2xx answer."""
        if self._transport is None:
            check_network_allowed(self.model_id)
        client = await self._client()
        http_request = client.build_request(
            "POST",
            f"{self.base_url}/chat/completions",
            json=self.build_body(request, stream=stream),
            headers={"Accept": "text/event-stream" if stream else "application/json"},
        )
        response = await client.send(http_request, stream=True)
        if not response.is_success:
            try:
                raw = await _read_at_most(response, _ERROR_BODY_LIMIT)
            finally:
                await response.aclose()
            body = raw.decode("utf-8", errors="replace").strip()
            raise _HTTPStatus(response.status_code, body, response.headers.get("retry-after"))
        return response

    async def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        self._prune()
        entry = self._clients.get(loop)
        if entry is None:
            # httpx's default transport does not retry (retries=0) and honours proxy
            # variables; retrying is the retry wrapper's job.
            client = httpx.AsyncClient(
                transport=self._transport, timeout=self._timeouts, headers=self._headers
            )
            entry = self._clients[loop] = (client, _close_at_loop_end(client))
            await anext(entry[1])  # now the loop knows it: asyncio.run will finalize it
        return entry[0]

    def _prune(self) -> None:
        # A closed loop's client cannot be closed or reused; its sockets go with it.
        for loop in [loop for loop in self._clients if loop.is_closed()]:
            del self._clients[loop]


async def _close_at_loop_end(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Closes ``client`` when finalized.

    An event loop finalizes the async generators started on it when it shuts down
    (``loop.shutdown_asyncgens``, called by ``asyncio.run``), while it can still run
    ``aclose``: so a pooled keep-alive connection does not outlive its loop unclosed,
    even when nobody calls :meth:`OpenAICompatModel.aclose`.
    """
    try:
        yield
    finally:
        await client.aclose()


# -- wire format: out ----------------------------------------------------------------------


def _wire_message(message: Message) -> dict[str, Any]:
    # Never null content: OpenAI allows it beside tool calls, but llama-cpp-python's server
    # rejects it, and "" means the same to every server.
    out: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id or ""
    elif message.name:
        out["name"] = message.name
    return out


def _wire_tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _wire_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


# -- wire format: in -----------------------------------------------------------------------


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])


async def _expect_event_stream(response: httpx.Response, deadline: float | None) -> None:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        async with asyncio.timeout_at(deadline):
            raw = await _read_at_most(response, _ERROR_BODY_LIMIT)
        raise BadReply(f"expected an event stream, got {content_type!r}: {excerpt(raw)}")


def _json_body(response: httpx.Response, raw: bytes) -> dict[str, Any]:
    content_type = response.headers.get("content-type", "")
    if content_type and "json" not in content_type:
        raise BadReply(f"expected a JSON reply, got {content_type!r}: {excerpt(raw)}")
    try:
        data = json.loads(raw)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise BadReply(f"reply is not valid JSON ({err}): {excerpt(raw)}") from err
    if not isinstance(data, dict):
        raise BadReply(f"reply is not a JSON object: {excerpt(raw)}")
    return data


def _parse_completion(data: dict[str, Any], model_id: str) -> ModelResponse:
    if "error" in data and "choices" not in data:
        raise BadReply(f"reply is an error: {error_text(data)}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadReply(f"reply has no choices: {excerpt(json.dumps(data))}")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise BadReply(f"reply's choice has no message: {excerpt(json.dumps(choice))}")
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise BadReply(f"tool_calls is not a list: {excerpt(json.dumps(raw_calls))}")
    calls = tuple(_tool_call(raw, index) for index, raw in enumerate(raw_calls))
    content = content_text(message.get("content"))
    reason = choice.get("finish_reason")
    return ModelResponse(
        text=content if content or not calls else None,
        tool_calls=calls,
        usage=usage_from(data.get("usage")),
        finish_reason=None if reason is None else str(reason),
        model=model_id,
    )


def _tool_call(raw: Any, index: int) -> ToolCall:
    function = raw.get("function") if isinstance(raw, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(raw, dict) or not isinstance(function, dict) or not name:
        raise BadReply(f"malformed tool call: {excerpt(json.dumps(raw))}")
    return ToolCall(
        id=str(raw.get("id") or f"call_{index}"),
        name=str(name),
        arguments=arguments_text(function.get("arguments")),
    )


# -- errors --------------------------------------------------------------------------------


def _translate_error(err: Exception, model_id: str, url: str, budget: float | None) -> ModelError:
    """The library's typed error for any failure of a call: the one place that maps them."""
    if isinstance(err, _HTTPStatus):
        return ModelHTTPError(
            err.status, err.body, model=model_id, retry_after=parse_retry_after(err.retry_after)
        )
    if isinstance(err, BadReply):
        return ModelOutputError(str(err), model=model_id)
    if isinstance(err, BrokenStream):
        return ModelConnectionError(str(err), model=model_id)
    if isinstance(err, httpx.TimeoutException):
        return ModelTimeoutError(f"{type(err).__name__} talking to {url}", model=model_id)
    if isinstance(err, TimeoutError):  # asyncio's deadline (TimeoutError is an OSError)
        within = f" within the {budget:g} s deadline" if budget is not None else ""
        return ModelTimeoutError(f"no complete reply from {url}{within}", model=model_id)
    if isinstance(err, httpx.DecodingError):
        return ModelOutputError(f"reply body cannot be decoded: {err}", model=model_id)
    detail = str(err) or "connection failed"
    return ModelConnectionError(f"{type(err).__name__} talking to {url}: {detail}", model=model_id)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
