"""The gateway's OpenAI-compatible face: ``/v1/models``, ``/v1/chat/completions`` and
``/v1/embeddings``.

Each exposed name is either a **model** (any llmagentos model id, proxied through the
:class:`~llmagentos.llm.base.Model` interface: the embedded SmolLM2, an OpenAI-
compatible server...) or an **agent** (a run config whose agent answers: the last user
message is its observation, the reply is its decision ``{"action", "reason"}`` as JSON
text). Streaming answers in Server-Sent Events as OpenAI's API does. An **embedder**
(any embedder id: the embedded MiniLM, another server) answers ``/v1/embeddings``
through the kernel's embedding service, so its calls are batched with, cached for and
accounted beside every agent's. So the official
``openai`` client, and any tool that speaks that API, talks to llmagentos.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmagentos._json import jsonable
from llmagentos.exceptions import ConfigError, LLMAgentOSError, ModelError
from llmagentos.llm.types import Message, ModelRequest, ModelSettings

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from llmagentos.agent import Agent
    from llmagentos.embeddings import Embedder
    from llmagentos.llm.base import Model

__all__ = ["ChatCompletionRequest", "EmbeddingRequest", "Exposed", "OpenAIFace"]


class _ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = None


class ChatCompletionRequest(BaseModel):
    """The part of OpenAI's chat-completion request llmagentos reads (others are ignored)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[_ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request: texts only (token arrays are refused by name)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


_MAX_INPUTS = 2048  # OpenAI's own limit per request
_MAX_INPUT_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class Exposed:
    """One name on ``/v1/models``: a model, an agent made by ``agent_factory``, or an
    embedder."""

    name: str
    model: Model | None = None
    agent_factory: Callable[[], Agent] | None = None
    embedder: Embedder | None = None

    @property
    def kind(self) -> str:
        if self.embedder is not None:
            return "embedder"
        return "model" if self.model is not None else "agent"


def _error(status: int, message: str, kind: str, param: str | None = None) -> Response:
    from starlette.responses import JSONResponse

    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    headers = {"retry-after": "1"} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


class OpenAIFace:
    """The two OpenAI routes over the exposed models and agents."""

    def __init__(self, exposed: list[Exposed]) -> None:
        names = [item.name for item in exposed]
        if len(set(names)) != len(names):
            raise ConfigError("models", f"exposed names must be distinct (got {names})")
        self.exposed = {item.name: item for item in exposed}
        self.created = int(time.time())

    async def models(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        data = [
            {"id": name, "object": "model", "created": self.created,
             "owned_by": f"llmagentos ({item.kind})"}
            for name, item in self.exposed.items()
        ]  # fmt: skip
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(self, request: Request) -> Response:
        try:
            body = ChatCompletionRequest.model_validate_json(await request.body())
        except ValidationError as err:
            first = err.errors()[0]
            param = ".".join(str(part) for part in first["loc"])
            return _error(400, f"{param}: {first['msg']}", "invalid_request_error", param)
        item = self.exposed.get(body.model)
        if item is None:
            known = ", ".join(self.exposed) or "none"
            return _error(
                404, f"unknown model {body.model!r} (known: {known})", "invalid_request_error",
                "model",
            )  # fmt: skip
        if item.embedder is not None:
            return _error(400, f"{body.model!r} is an embedding model: use /v1/embeddings",
                          "invalid_request_error", "model")  # fmt: skip
        try:
            if item.model is not None:
                return await self._from_model(item.model, body)
            return await self._from_agent(item, body)
        except ModelError as err:
            return _error(503, f"{body.model}: {err}", "server_error")
        except LLMAgentOSError as err:
            return _error(400, f"{body.model}: {err}", "invalid_request_error")

    async def embeddings(self, request: Request) -> Response:
        import base64

        from starlette.responses import JSONResponse

        try:
            body = EmbeddingRequest.model_validate_json(await request.body())
        except ValidationError as err:
            first = err.errors()[0]
            param = ".".join(str(part) for part in first["loc"]) or "input"
            return _error(400, f"{param}: {first['msg']}", "invalid_request_error", param)
        item = self.exposed.get(body.model)
        if item is None or item.embedder is None:
            known = ", ".join(n for n, i in self.exposed.items() if i.embedder is not None)
            return _error(404, f"no embedding model {body.model!r} (known: {known or 'none'})",
                          "invalid_request_error", "model")  # fmt: skip
        texts = [body.input] if isinstance(body.input, str) else body.input
        if len(texts) > _MAX_INPUTS:
            return _error(400, f"input: at most {_MAX_INPUTS} texts per request",
                          "invalid_request_error", "input")  # fmt: skip
        for index, text in enumerate(texts):
            if not text or len(text) > _MAX_INPUT_CHARS:
                return _error(400, f"input[{index}]: a text of 1 to {_MAX_INPUT_CHARS} characters",
                              "invalid_request_error", "input")  # fmt: skip
        if body.dimensions is not None and body.dimensions != item.embedder.dimension:
            return _error(400, f"dimensions: {body.model!r} has {item.embedder.dimension}",
                          "invalid_request_error", "dimensions")  # fmt: skip
        try:
            result = await item.embedder.aembed(texts)
        except ModelError as err:
            return _error(503, f"{body.model}: {err}", "server_error")
        except LLMAgentOSError as err:
            return _error(503, f"{body.model}: {err}", "server_error")
        data = []
        for index, vector in enumerate(result.vectors):
            value: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if body.encoding_format == "base64"
                else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": value})
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
        return JSONResponse({"object": "list", "data": data, "model": body.model, "usage": usage})

    # -- models ---------------------------------------------------------------------------

    def _request(self, body: ChatCompletionRequest) -> ModelRequest:
        messages = [
            Message(role="system" if m.role == "developer" else m.role, content=m.content or "")
            for m in body.messages
            if m.role in ("system", "developer", "user", "assistant")
        ]
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        settings = ModelSettings(
            temperature=body.temperature,
            max_tokens=body.max_completion_tokens or body.max_tokens,
            top_p=body.top_p,
            seed=body.seed,
            stop=tuple(stop),
        )
        return ModelRequest(messages=tuple(messages), settings=settings)

    async def _from_model(self, model: Model, body: ChatCompletionRequest) -> Response:
        from starlette.responses import JSONResponse, StreamingResponse

        request = self._request(body)
        ident = f"chatcmpl-{secrets.token_hex(12)}"
        if body.stream:
            return StreamingResponse(
                self._stream(model, request, body.model, ident), media_type="text/event-stream"
            )
        reply = await model.arequest(request)
        usage = reply.usage
        return JSONResponse({
            "id": ident, "object": "chat.completion", "created": int(time.time()),
            "model": body.model,
            "choices": [{"index": 0, "finish_reason": reply.finish_reason or "stop",
                         "message": {"role": "assistant", "content": reply.text or ""}}],
            "usage": {"prompt_tokens": usage.prompt_tokens,
                      "completion_tokens": usage.completion_tokens,
                      "total_tokens": usage.total_tokens},
        })  # fmt: skip

    async def _stream(
        self, model: Model, request: ModelRequest, name: str, ident: str
    ) -> AsyncIterator[str]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            data = {
                "id": ident, "object": "chat.completion.chunk", "created": created,
                "model": name, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }  # fmt: skip
            return f"data: {json.dumps(data)}\n\n"

        yield chunk({"role": "assistant", "content": ""}, None)
        finish = "stop"
        try:
            async for event in model.astream(request):
                if event.text:
                    yield chunk({"content": event.text}, None)
                if event.finish_reason:
                    finish = event.finish_reason
        except ModelError as err:
            error = {"error": {"message": str(err), "type": "server_error"}}
            yield f"data: {json.dumps(error)}\n\n"
        yield chunk({}, finish)
        yield "data: [DONE]\n\n"

    # -- agents ---------------------------------------------------------------------------

    async def _from_agent(self, item: Exposed, body: ChatCompletionRequest) -> Response:
        from starlette.responses import JSONResponse, StreamingResponse

        assert item.agent_factory is not None
        users = [m.content for m in body.messages if m.role == "user" and m.content]
        if not users:
            return _error(400, "an agent needs a user message (its observation)",
                          "invalid_request_error", "messages")  # fmt: skip
        factory = item.agent_factory
        observation = users[-1]

        def decide() -> dict[str, Any]:
            agent = factory()
            try:
                features = agent.perception_module.perceive(observation)
                decision = agent.planning_module.decide(features)
            finally:
                agent.close()
            return {"action": jsonable(decision.action), "reason": decision.reason}

        text = json.dumps(await asyncio.to_thread(decide))
        ident = f"chatcmpl-{secrets.token_hex(12)}"
        if body.stream:

            async def events() -> AsyncIterator[str]:
                base = {"id": ident, "object": "chat.completion.chunk",
                        "created": int(time.time()), "model": body.model}  # fmt: skip
                for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
                    choice = {"index": 0, "delta": delta, "finish_reason": finish}
                    yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({
            "id": ident, "object": "chat.completion", "created": int(time.time()),
            "model": body.model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })  # fmt: skip
