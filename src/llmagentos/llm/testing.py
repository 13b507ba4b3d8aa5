"""Test doubles that ship with the library: a scripted model and a function model.

Use them for what a test is *not* about (a planner's logic, an agent loop) so the test
runs instantly and offline::

    model = ScriptedModel(["north", ModelResponse(text="south")])
    ...
    model.assert_all_used()

:func:`block_network_models` makes every real network model call fail, so a test suite
cannot talk to a real backend by accident; tests that mean to opt in with
:func:`allow_network_models`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from llmagentos.exceptions import ModelError
from llmagentos.llm.base import Model
from llmagentos.llm.types import ModelRequest, ModelResponse, ToolCall, Usage

__all__ = [
    "FunctionModel",
    "NetworkBlockedError",
    "ScriptedModel",
    "allow_network_models",
    "block_network_models",
    "check_network_allowed",
    "network_models_allowed",
]

Reply = str | ModelResponse | ToolCall | BaseException


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _as_response(
    reply: str | ModelResponse | ToolCall, request: ModelRequest, model: str
) -> ModelResponse:
    if isinstance(reply, ModelResponse):
        return reply
    prompt_tokens = sum(_approx_tokens(m.content or "") for m in request.messages)
    if isinstance(reply, ToolCall):
        return ModelResponse(
            tool_calls=(reply,), finish_reason="tool_calls", model=model,
            usage=Usage(prompt_tokens=prompt_tokens,
                        completion_tokens=_approx_tokens(reply.arguments)),
        )  # fmt: skip
    return ModelResponse(
        text=reply, finish_reason="stop", model=model,
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=_approx_tokens(reply)),
    )  # fmt: skip


class ScriptedModel(Model):
    """Replies with a queue of scripted answers, in order, and records every request.

    A reply may be text, a :class:`ModelResponse`, a :class:`ToolCall`, or an exception
    to raise. Running out of replies is an error that says how many were used; call
    :meth:`assert_all_used` at the end of a test to catch replies that were never asked
    for.
    """

    def __init__(self, replies: Sequence[Reply], *, model_id: str = "test:scripted") -> None:
        self.replies = list(replies)
        self.model_id = model_id
        self.requests: list[ModelRequest] = []

    @property
    def remaining(self) -> int:
        return len(self.replies) - len(self.requests)

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        index = len(self.requests)
        self.requests.append(request)
        if index >= len(self.replies):
            raise ModelError(
                f"ScriptedModel ran out of replies: call {index + 1} but only "
                f"{len(self.replies)} scripted",
                model=self.model_id,
            )
        reply = self.replies[index]
        if isinstance(reply, BaseException):
            raise reply
        return _as_response(reply, request, self.model_id)

    def assert_all_used(self) -> None:
        """Raise AssertionError if scripted replies were never requested."""
        if self.remaining > 0:
            unused = self.replies[len(self.requests) :]
            raise AssertionError(f"{self.remaining} scripted replies unused: {unused!r:.200}")


Responder = Callable[[ModelRequest], "str | ModelResponse | ToolCall | Awaitable[Any]"]


class FunctionModel(Model):
    """Produces each reply by calling ``function(request)`` (sync or async).

    The function returns text, a :class:`ModelResponse` or a :class:`ToolCall`.
    """

    def __init__(self, function: Responder, *, model_id: str = "test:function") -> None:
        self.function = function
        self.model_id = model_id
        self.requests: list[ModelRequest] = []

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        reply = self.function(request)
        if inspect.isawaitable(reply):
            reply = await reply
        return _as_response(reply, request, self.model_id)


# -- the network guard ----------------------------------------------------------------------


class _NetworkGuard:
    allowed = True


_guard = _NetworkGuard()


class NetworkBlockedError(ModelError):
    """A test tried to call a real network model without opting in."""


def network_models_allowed() -> bool:
    return _guard.allowed


def check_network_allowed(model: str) -> None:
    """Called by network providers before each request."""
    if not _guard.allowed:
        raise NetworkBlockedError(
            "real network model calls are blocked in this test; use ScriptedModel or "
            "FunctionModel, or opt in with allow_network_models()",
            model=model,
        )


def block_network_models() -> None:
    """Make every network model call raise :class:`NetworkBlockedError`."""
    _guard.allowed = False


@contextlib.contextmanager
def allow_network_models() -> Iterator[None]:
    """Allow real network model calls inside the block (tests against real peers)."""
    previous, _guard.allowed = _guard.allowed, True
    try:
        yield
    finally:
        _guard.allowed = previous
