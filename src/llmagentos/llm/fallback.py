"""FallbackModel: try several models in order until one answers.

Errors listed in ``on`` move on to the next model, except an HTTP 4xx other than 408,
409 and 429: a bad request fails the same everywhere, so it is raised at once. When
every model fails, the *last* error is raised (its type intact, so ``except
ModelHTTPError`` and an outer RetryModel see what actually happened) with every
model's error, oldest first, in its ``attempts`` list and summarised in a note.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from llmagentos.exceptions import (
    ConfigError,
    ModelConnectionError,
    ModelHTTPError,
    ModelTimeoutError,
)
from llmagentos.llm.base import Model, WrapperModel
from llmagentos.llm.types import ModelRequest, ModelResponse, StreamEvent

__all__ = ["FALLBACK_ERRORS", "FallbackAttempt", "FallbackModel", "attempts_of"]

T = TypeVar("T")
FALLBACK_ERRORS: tuple[type[Exception], ...] = (
    ModelConnectionError,
    ModelTimeoutError,
    ModelHTTPError,
)
_CLIENT_STATUSES_WORTH_ANOTHER = frozenset({408, 409, 429})

FallbackAttempt = tuple[str, Exception]
"""(model id, the error it raised)"""


def attempts_of(err: BaseException) -> list[FallbackAttempt]:
    """The ``(model_id, error)`` pairs a FallbackModel attached to ``err`` (or [])."""
    return list(getattr(err, "attempts", []))


class FallbackModel(WrapperModel):
    """Sends each call to ``models[0]``, then to the next on a listed error.

    ``model_id`` is the first model's; ``inner`` is the first model, ``models`` all.
    Streams fall back only before their first event (after it, the caller has output).
    """

    def __init__(
        self,
        models: Sequence[Model],
        *,
        on: tuple[type[Exception], ...] = FALLBACK_ERRORS,
    ) -> None:
        if not models:
            raise ConfigError("models", "FallbackModel needs at least one model")
        super().__init__(models[0])
        self.models = tuple(models)
        self.on = on
        self.supports_batching = all(model.supports_batching for model in self.models)
        self.fallbacks = 0  # calls answered by a model other than the first

    def should_fall_back(self, err: Exception) -> bool:
        """Whether ``err`` is worth sending to the next model."""
        if isinstance(err, ModelHTTPError) and 400 <= err.status_code < 500:
            return err.status_code in _CLIENT_STATUSES_WORTH_ANOTHER
        return isinstance(err, self.on)

    async def _first_success(self, call: Callable[[Model], Awaitable[T]]) -> T:
        failed: list[FallbackAttempt] = []
        for index, model in enumerate(self.models):
            try:
                result = await call(model)
            except Exception as err:
                failed.append((model.model_id, err))
                if index + 1 == len(self.models) or not self.should_fall_back(err):
                    if len(failed) > 1:
                        _attach(err, failed)
                    raise
                continue
            self.fallbacks += index > 0
            return result
        raise AssertionError("unreachable: the last model either returns or raises")

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        return await self._first_success(lambda model: model.arequest(request))

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        if not self.supports_batching:
            return await Model.abatch(self, requests)
        return await self._first_success(lambda model: model.abatch(requests))

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        async def open_stream(
            model: Model,
        ) -> tuple[AsyncIterator[StreamEvent], StreamEvent | None]:
            stream = model.astream(request)
            try:
                return stream, await anext(stream)
            except StopAsyncIteration:  # an empty stream is an answer too
                return stream, None
            except BaseException:
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
                raise

        stream, first = await self._first_success(open_stream)
        if first is None:
            return
        yield first
        async for event in stream:
            yield event

    async def aclose(self) -> None:
        for model in self.models:
            await model.aclose()

    def __repr__(self) -> str:
        return f"FallbackModel({list(self.models)!r})"


def _attach(err: Exception, failed: list[FallbackAttempt]) -> None:
    err.attempts = list(failed)  # type: ignore[attr-defined]
    summary = "; ".join(f"{model}: {type(e).__name__}: {e}" for model, e in failed)
    err.add_note(f"FallbackModel tried {len(failed)} models: {summary}")
