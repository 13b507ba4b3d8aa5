"""Reading OpenAI-style streams: Server-Sent Events and chat-completion chunks.

:class:`SSEDecoder` handles only what chat-completion streams use: ``data`` (multi-line
joined by ``\\n``), ``event``, ``id``, comments and blank-line dispatch. Following the spec,
an event still open when the stream ends is dropped: a stream cut mid-event must look
truncated, not complete. :class:`ChatStream` folds the decoded chunks into text deltas
and, at the end, whole tool calls.

Parsing raises :class:`BadReply` (a complete but malformed reply) or :class:`BrokenStream`
(the stream broke off); :mod:`llmagentos.llm.openai_compat` turns them into typed model
errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from llmagentos.llm.types import StreamEvent, ToolCall, Usage

__all__ = ["BadReply", "BrokenStream", "ChatStream", "SSEDecoder", "ServerSentEvent"]

_EXCERPT = 500  # characters of a bad body kept in an error message


class BadReply(Exception):
    """The server answered, but not with a valid chat completion."""


class BrokenStream(Exception):
    """The stream ended before it was complete, or reported an error mid-way."""


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Turns lines (without their line ending) into events, one ``feed`` at a time."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line; return the event a blank line completes, else ``None``."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # a comment, used as a keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        # "retry" and unknown fields are ignored, as the spec says.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent("\n".join(self._data), self._event or "message", self._id)
        self._data, self._event = [], ""
        return event


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class ChatStream:
    """What a chat-completion stream has said so far.

    Feed it every event; it returns the text deltas, accumulates tool-call deltas by
    ``index``, and :meth:`final` makes the closing event.
    """

    done: bool = False
    finish_reason: str | None = None
    usage: Usage | None = None
    calls: dict[int, _PartialCall] = field(default_factory=dict)

    def feed(self, event: ServerSentEvent) -> str:
        """Take one event; return its text delta (``""`` if none)."""
        if event.data.strip() == "[DONE]":
            self.done = True
            return ""
        if event.event == "error":
            raise BrokenStream(f"server reported an error mid-stream: {excerpt(event.data)}")
        try:
            chunk = json.loads(event.data)
        except ValueError as err:
            raise BadReply(f"stream event is not valid JSON: {excerpt(event.data)}") from err
        if not isinstance(chunk, dict):
            raise BadReply(f"stream event is not a JSON object: {excerpt(event.data)}")
        if "error" in chunk:
            raise BrokenStream(f"server reported an error mid-stream: {error_text(chunk)}")
        if chunk.get("usage"):  # OpenAI sends it in a last chunk with no choices
            self.usage = usage_from(chunk["usage"])
        text: list[str] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = content_text(delta.get("content"))
            if content:
                text.append(content)
            for position, part in enumerate(delta.get("tool_calls") or []):
                self._add_call(part, position)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return "".join(text)

    def _add_call(self, part: Any, position: int) -> None:
        if not isinstance(part, dict):
            raise BadReply(f"malformed tool-call delta: {excerpt(json.dumps(part))}")
        call = self.calls.setdefault(int(part.get("index", position)), _PartialCall())
        function = part.get("function") or {}
        # id and name come whole in the first delta; some servers repeat them later.
        call.id = call.id or str(part.get("id") or "")
        call.name = call.name or str(function.get("name") or "")
        if function.get("arguments") is not None:
            call.arguments.append(arguments_text(function["arguments"]))

    def final(self) -> StreamEvent:
        """The closing event: whole tool calls, finish reason and usage.

        Raises:
            BrokenStream: neither ``[DONE]`` nor a finish reason arrived (truncated).
        """
        if not self.done and self.finish_reason is None:
            raise BrokenStream("stream ended before [DONE] or a finish reason (truncated)")
        calls = []
        for index, call in sorted(self.calls.items()):
            if not call.name:
                raise BadReply(f"streamed tool call {index} has no function name")
            arguments = "".join(call.arguments) or "{}"
            calls.append(
                ToolCall(id=call.id or f"call_{index}", name=call.name, arguments=arguments)
            )
        return StreamEvent(
            tool_calls=tuple(calls), finish_reason=self.finish_reason, usage=self.usage or Usage()
        )


# -- helpers shared with the non-streamed reply ---------------------------------------------


def arguments_text(value: Any) -> str:
    """Tool-call arguments as JSON text; some servers (older Ollama) send an object."""
    if value is None:
        return "{}"
    return value if isinstance(value, str) else json.dumps(value)


def content_text(content: Any) -> str | None:
    """A message's content as text: a string, or the text of its content parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    raise BadReply(f"message content is neither text nor parts: {excerpt(repr(content))}")


def usage_from(raw: Any) -> Usage:
    """The ``usage`` object as :class:`Usage`; missing or odd fields count as 0."""
    if not isinstance(raw, dict):
        return Usage()
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    return Usage(
        prompt_tokens=prompt if isinstance(prompt, int) else 0,
        completion_tokens=completion if isinstance(completion, int) else 0,
    )


def error_text(data: dict[str, Any]) -> str:
    """The message of an ``{"error": ...}`` body."""
    error = data.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    return excerpt(str(message) if message else json.dumps(data))


def excerpt(raw: bytes | str) -> str:
    """A one-line, bounded excerpt of a body for an error message."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 3] + "..."
