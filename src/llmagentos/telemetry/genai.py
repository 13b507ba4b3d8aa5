"""GenAI spans: model calls, the scheduler's queue, and tool calls.

Called only while telemetry is on (the callers check :data:`TELEMETRY.on` first).
Names and attributes follow OpenTelemetry's GenAI semantic conventions: a model call
is ``chat {model}`` (kind client) with ``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` and
``gen_ai.usage.output_tokens``; a tool call is ``execute_tool {name}``. Prompts,
replies and tool arguments are recorded only with ``record_content`` on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from llmagentos.telemetry.spans import set_attributes, span, span_since
from llmagentos.telemetry.state import TELEMETRY

if TYPE_CHECKING:
    from llmagentos.llm.types import ModelRequest, ModelResponse, ToolCall
    from llmagentos.tools.base import ToolResult

__all__ = ["provider_of", "queue_waited", "traced_model_call", "traced_tool_call"]

_PROVIDERS = {"local": "llama_cpp", "openai": "openai", "test": "test", "stand-in": "test"}


def provider_of(model_id: str) -> str:
    """The ``gen_ai.provider.name`` for one of our model ids."""
    if model_id.startswith(("http://", "https://")):
        return "openai"  # an OpenAI-compatible server
    prefix = model_id.split(":", 1)[0]
    return _PROVIDERS.get(prefix, prefix or "unknown")


def _messages(request: ModelRequest) -> str:
    return json.dumps(
        [
            {"role": m.role, "content": m.content}
            | ({"tool_calls": [c.name for c in m.tool_calls]} if m.tool_calls else {})
            for m in request.messages
        ],
        ensure_ascii=False,
    )


async def traced_model_call(
    model_id: str,
    agent: str,
    backend: str,
    request: ModelRequest,
    call: Callable[[ModelRequest], Awaitable[ModelResponse]],
) -> ModelResponse:
    """``call(request)`` inside a ``chat {model}`` span, with its metrics."""
    provider = provider_of(model_id)
    settings = request.settings
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model_id,
        "gen_ai.request.temperature": settings.temperature,
        "gen_ai.request.max_tokens": settings.max_tokens,
        "gen_ai.request.seed": settings.seed,
        "gen_ai.agent.name": agent,
        "gen_ai.output.type": "json" if request.output_schema is not None else "text",
        "llmagentos.backend": backend,
    }
    if TELEMETRY.record_content:
        attributes["gen_ai.input.messages"] = _messages(request)
    started = time.perf_counter()
    error: str | None = None
    response: ModelResponse | None = None
    try:
        with span(f"chat {model_id}", attributes, kind="client") as current:
            try:
                response = await call(request)
            except BaseException as err:
                error = type(err).__name__
                set_attributes(current, {"error.type": error})
                raise
            usage = response.usage
            set_attributes(
                current,
                {
                    "gen_ai.response.model": response.model or model_id,
                    "gen_ai.usage.input_tokens": usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": usage.completion_tokens,
                    "gen_ai.response.finish_reasons": [response.finish_reason or "stop"],
                    "llmagentos.cache.hit": response.cached,
                },
            )
            if TELEMETRY.record_content:
                reply = {"role": "assistant", "content": response.text}
                if response.tool_calls:
                    reply["tool_calls"] = [c.name for c in response.tool_calls]  # type: ignore[assignment]
                set_attributes(current, {"gen_ai.output.messages": json.dumps([reply])})
            return response
    finally:
        instruments = TELEMETRY.instruments
        if instruments is not None:
            usage_in = response.usage.prompt_tokens if response is not None else None
            usage_out = response.usage.completion_tokens if response is not None else None
            instruments.model_call(
                provider=provider,
                model=model_id,
                seconds=time.perf_counter() - started,
                input_tokens=usage_in,
                output_tokens=usage_out,
                cached=bool(response is not None and response.cached),
                error=error,
            )


def queue_waited(backend: str, agent: str, enqueued: float) -> None:
    """The call has its slot: a ``queue wait`` span from ``enqueued`` (``time.monotonic``)."""
    waited = max(0.0, time.monotonic() - enqueued)
    span_since(
        "queue wait",
        time.time_ns() - int(waited * 1e9),
        {"llmagentos.backend": backend, "gen_ai.agent.name": agent, "llmagentos.waited_s": waited},
    )
    instruments = TELEMETRY.instruments
    if instruments is not None:
        instruments.queue_wait(backend, waited)


async def traced_tool_call(
    call: ToolCall, run: Callable[[], Awaitable[ToolResult]], description: str = ""
) -> ToolResult:
    """``run()`` inside an ``execute_tool {name}`` span, with its metrics."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.name,
        "gen_ai.tool.call.id": call.id or None,
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": description or None,
    }
    if TELEMETRY.record_content:
        attributes["gen_ai.tool.call.arguments"] = call.arguments
    failed = True
    try:
        with span(f"execute_tool {call.name}", attributes) as current:
            result = await run()
            failed = not result.ok
            outcome: dict[str, Any] = {"llmagentos.tool.ok": result.ok}
            if not result.ok:
                outcome["error.type"] = "tool_error"
                outcome["llmagentos.tool.error"] = (result.error or "")[:500]
                current.set_status(_error_status(result.error or "tool error"))
            if TELEMETRY.record_content and result.ok:
                outcome["gen_ai.tool.call.result"] = result.content()[:4000]
            set_attributes(current, outcome)
            return result
    finally:
        instruments = TELEMETRY.instruments
        if instruments is not None:
            instruments.tool_call(call.name, error=failed)


def _error_status(message: str) -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, message[:200])
