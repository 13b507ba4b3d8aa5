"""The Model interface: async-first, with a sync face, and the wrapper base class.

A provider implements one coroutine, :meth:`Model.arequest` (and, if it can stream,
:meth:`Model.astream`). Everything else is built on those two: the sync face
(:meth:`request`, :meth:`stream`), the conversational helpers (:meth:`achat`,
:meth:`chat`), and structured output with validation and bounded repair
(:meth:`agenerate`, :meth:`generate`). Cross-cutting behaviour (cache, retry, limits,
fallback, accounting, scheduling) wraps a model in a :class:`WrapperModel`; providers
stay small.
"""

from __future__ import annotations

import json
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from llmagentos.exceptions import ModelOutputError
from llmagentos.llm.types import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamEvent,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from llmagentos.modules.base import run_sync

__all__ = ["Model", "Prompt", "WrapperModel", "collect_stream", "to_messages"]

T = TypeVar("T", bound=BaseModel)
Prompt = str | Message | Sequence[Message]


def to_messages(prompt: Prompt, *, system: str | None = None) -> tuple[Message, ...]:
    """A prompt (text, a message, or messages) as a message tuple, with an optional system."""
    if isinstance(prompt, str):
        messages: tuple[Message, ...] = (Message.user(prompt),)
    elif isinstance(prompt, Message):
        messages = (prompt,)
    else:
        messages = tuple(prompt)
    if system is not None:
        messages = (Message.system(system), *messages)
    return messages


def collect_stream(events: Iterable[StreamEvent], *, model: str = "") -> ModelResponse:
    """Fold stream events into the response they add up to."""
    text: list[str] = []
    calls: list[ToolCall] = []
    finish: str | None = None
    usage = Usage()
    for event in events:
        text.append(event.text)
        calls.extend(event.tool_calls)
        finish = event.finish_reason or finish
        if event.usage is not None:
            usage = event.usage
    joined = "".join(text)
    return ModelResponse(
        text=joined if joined or not calls else None,
        tool_calls=tuple(calls),
        usage=usage,
        finish_reason=finish,
        model=model,
    )


class Model(ABC):
    """A chat model.

    Attributes:
        model_id: the id it was made from (``local:smollm2``, ``openai:gpt-4o-mini``, ...).
        supports_batching: whether :meth:`abatch` runs requests together (the scheduler
            then groups waiting requests for this backend).
    """

    model_id: str = "model"
    supports_batching: bool = False

    @abstractmethod
    async def arequest(self, request: ModelRequest) -> ModelResponse:
        """Send one request and return the whole reply."""

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream the reply. The default sends one request and yields it as one event."""
        response = await self.arequest(request)
        yield StreamEvent(
            text=response.text or "",
            tool_calls=response.tool_calls,
            finish_reason=response.finish_reason,
            usage=response.usage,
        )

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        """Run several requests; the default runs them one after another."""
        return [await self.arequest(request) for request in requests]

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release connections or loaded weights."""

    # -- sync face ------------------------------------------------------------------------

    def request(self, request: ModelRequest) -> ModelResponse:
        """Sync twin of :meth:`arequest`."""
        return run_sync(self.arequest(request))

    def stream(self, request: ModelRequest) -> Iterator[StreamEvent]:
        """Sync twin of :meth:`astream`: events arrive as the model produces them."""
        return _iterate_in_thread(lambda: self.astream(request))

    def close(self) -> None:
        run_sync(self.aclose())

    # -- conversation helpers -------------------------------------------------------------

    async def achat(
        self,
        prompt: Prompt,
        *,
        system: str | None = None,
        tools: Sequence[Tool] = (),
        tool_choice: ToolChoice = "auto",
        settings: ModelSettings | None = None,
        **setting_values: Any,
    ) -> ModelResponse:
        """Ask ``prompt``; return the reply (text and/or tool calls).

        Args:
            prompt: a string (one user message), a message, or a conversation.
            system: a system message to put first.
            tools: functions the model may call.
            tool_choice: ``auto``, ``none``, ``required`` or a tool name.
            settings: sampling settings; keyword values (``temperature=0``) override them.
        """
        request = ModelRequest(
            messages=to_messages(prompt, system=system),
            tools=tuple(tools),
            tool_choice=tool_choice,
            settings=_settings(settings, setting_values),
        )
        return await self.arequest(request)

    def chat(self, prompt: Prompt, **kwargs: Any) -> ModelResponse:
        """Sync twin of :meth:`achat`."""
        return run_sync(self.achat(prompt, **kwargs))

    @overload
    async def agenerate(
        self,
        prompt: Prompt,
        output: type[T],
        *,
        system: str | None = ...,
        repairs: int = ...,
        settings: ModelSettings | None = ...,
        **setting_values: Any,
    ) -> T: ...

    @overload
    async def agenerate(
        self,
        prompt: Prompt,
        output: dict[str, Any],
        *,
        system: str | None = ...,
        repairs: int = ...,
        settings: ModelSettings | None = ...,
        **setting_values: Any,
    ) -> Any: ...

    async def agenerate(
        self,
        prompt: Prompt,
        output: type[BaseModel] | dict[str, Any],
        *,
        system: str | None = None,
        repairs: int = 2,
        settings: ModelSettings | None = None,
        **setting_values: Any,
    ) -> Any:
        """Structured output: a reply that validates against a pydantic model or JSON schema.

        On invalid output the validation error is sent back to the model, which gets
        ``repairs`` more attempts; then :class:`~llmagentos.exceptions.ModelOutputError`.

        Returns:
            an instance of ``output`` (a pydantic model) or the parsed JSON value.
        """
        schema, validate = _validator(output)
        messages = list(to_messages(prompt, system=system))
        errors: list[str] = []
        for _attempt in range(repairs + 1):
            request = ModelRequest(
                messages=tuple(messages),
                output_schema=schema,
                output_name=getattr(output, "__name__", "output"),
                settings=_settings(settings, setting_values),
            )
            response = await self.arequest(request)
            text = response.text or ""
            try:
                return validate(text)
            except ValueError as err:
                errors.append(str(err))
                messages.append(Message.assistant(text))
                messages.append(
                    Message.user(
                        f"That reply is not valid: {err}. Reply again with only JSON "
                        f"matching this schema: {json.dumps(schema)}"
                    )
                )
        raise ModelOutputError(
            f"no valid structured output after {repairs + 1} attempts: {errors[-1]}",
            model=self.model_id,
            errors=errors,
        )

    def generate(self, prompt: Prompt, output: Any, **kwargs: Any) -> Any:
        """Sync twin of :meth:`agenerate`."""
        return run_sync(self.agenerate(prompt, output, **kwargs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r})"


class WrapperModel(Model):
    """A model that adds behaviour around another (``inner``) and otherwise delegates."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.supports_batching = inner.supports_batching

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        return await self.inner.arequest(request)

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        async for event in self.inner.astream(request):
            yield event

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        return await self.inner.abatch(requests)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def layers(self) -> Iterator[Model]:
        """This wrapper and every model inside it, outermost first."""
        model: Model = self
        while True:
            yield model
            if not isinstance(model, WrapperModel):
                return
            model = model.inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


def _settings(settings: ModelSettings | None, values: dict[str, Any]) -> ModelSettings:
    base = settings or ModelSettings()
    if not values:
        return base
    return ModelSettings.model_validate({**base.model_dump(), **values})  # validated, unlike copy


def _validator(output: type[BaseModel] | dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The JSON schema to ask for, and a function text -> validated value (ValueError)."""
    if isinstance(output, type) and issubclass(output, BaseModel):
        model_type = output

        def validate_model(text: str) -> BaseModel:
            try:
                return model_type.model_validate_json(text)
            except ValidationError as err:
                raise ValueError(_one_line(err)) from err

        return output.model_json_schema(), validate_model
    if not isinstance(output, dict):
        raise TypeError(
            f"output must be a pydantic model class or a JSON schema dict, got "
            f"{type(output).__name__}"
        )
    schema = output

    def validate_schema(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not JSON: {err.msg} at position {err.pos}") from err
        _check_schema(value, schema)
        return value

    return schema, validate_schema


def _check_schema(value: Any, schema: dict[str, Any]) -> None:
    import jsonschema  # imported on first use: it is slow to import

    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        raise ValueError(f"at {where}: {err.message}") from err


def _one_line(err: ValidationError) -> str:
    parts = []
    for item in err.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "<root>"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _iterate_in_thread(make: Any) -> Iterator[StreamEvent]:
    """Drive an async iterator on a private loop in a thread; yield its items as they come."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=64)

    async def pump() -> None:
        async for item in make():
            items.put(("item", item))

    def target() -> None:
        try:
            run_sync(pump())
        except BaseException as err:  # handed to the consuming thread
            items.put(("error", err))
        else:
            items.put(("done", None))

    threading.Thread(target=target, name="llmagentos-stream", daemon=True).start()
    while True:
        kind, value = items.get()
        if kind == "item":
            yield value
        elif kind == "error":
            raise value
        else:
            return
