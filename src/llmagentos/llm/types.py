"""What goes into and comes out of a model: messages, tools, settings, responses, stream events.

All are pydantic models, so a request has one canonical JSON form (the cache key, the
wire format of a remote module) and bad input fails with a field-naming error.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmagentos.exceptions import ModelOutputError

__all__ = [
    "Message",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "Role",
    "StreamEvent",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "Usage",
]

Role = Literal["system", "user", "assistant", "tool"]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolCall(_Data):
    """A call the model asked for: ``arguments`` is the raw JSON text it produced."""

    id: str
    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict.

        Raises:
            ModelOutputError: the model produced malformed JSON or not an object.
        """
        try:
            value = json.loads(self.arguments or "{}")
        except (ValueError, RecursionError) as err:
            # Also too deep a nesting, or an integer past Python's digit limit: still the
            # model's mistake, still an error it can read, never a crash of the caller.
            reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
            raise ModelOutputError(
                f"tool call {self.name!r} has malformed arguments: {reason} "
                f"(got {self.arguments[:80]!r})"
            ) from err
        if not isinstance(value, dict):
            raise ModelOutputError(
                f"tool call {self.name!r} arguments must be a JSON object, got {value!r:.60}"
            )
        return value


class Message(_Data):
    """One chat message."""

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str | None, tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls)

    @classmethod
    def tool(cls, content: str, *, tool_call_id: str, name: str | None = None) -> Message:
        return cls(role="tool", content=content, tool_call_id=tool_call_id, name=name)


class Tool(_Data):
    """A function the model may call, described by a JSON schema of its parameters."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


ToolChoice = Literal["auto", "none", "required"] | str
"""``auto`` (model decides), ``none``, ``required`` (some tool), or a tool name (that tool)."""


class ModelSettings(_Data):
    """Sampling and limits for one call. ``None`` leaves the backend's default."""

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    timeout: float | None = Field(default=None, gt=0.0)
    """Overall deadline of the call in seconds, retries included."""


class ModelRequest(_Data):
    """Everything a model needs for one call."""

    messages: tuple[Message, ...] = Field(min_length=1)
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    output_schema: dict[str, Any] | None = None
    """A JSON schema the reply's text must satisfy (structured output)."""
    output_name: str = "output"
    settings: ModelSettings = ModelSettings()

    def canonical_json(self, model: str) -> str:
        """The request as canonical JSON (sorted keys, no spaces): the cache key's text."""
        data = {"model": model, **self.model_dump(mode="json")}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Usage(_Data):
    """Tokens a call consumed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class ModelResponse(_Data):
    """A model's reply."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: str | None = None
    """``stop``, ``length``, ``tool_calls``, or what the backend said."""
    model: str = ""
    cached: bool = False

    def message(self) -> Message:
        """The reply as an assistant message, to append to the conversation."""
        return Message.assistant(self.text, self.tool_calls)


class StreamEvent(_Data):
    """One piece of a streamed reply; the last event carries the finish reason and usage."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
