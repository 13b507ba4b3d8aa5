"""RetryModel: retry transient failures with exponential backoff and full jitter.

Retried: :class:`ModelConnectionError`, a :class:`ModelTimeoutError` of one attempt, and
:class:`ModelHTTPError` with status 408, 409, 429 or >= 500. Everything else (other 4xx,
:class:`ModelOutputError`, ...) fails at once: sending it again gives the same answer.
A stack holds at most one retry layer, since nested ones multiply the attempts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from llmagentos.exceptions import (
    ConfigError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelTimeoutError,
)
from llmagentos.llm.base import Model, WrapperModel
from llmagentos.llm.types import ModelRequest, ModelResponse, StreamEvent

__all__ = ["RETRY_STATUSES", "RetryModel", "RetryStats", "is_retryable"]

T = TypeVar("T")
RETRY_STATUSES = frozenset({408, 409, 429})
"""4xx statuses worth retrying (timeout, conflict, rate limit); every 5xx is too."""


def is_retryable(err: BaseException) -> bool:
    """Whether sending the same request again may succeed."""
    if isinstance(err, ModelHTTPError):
        return err.status_code in RETRY_STATUSES or err.status_code >= 500
    return isinstance(err, ModelConnectionError | ModelTimeoutError)


@dataclass
class RetryStats:
    """``calls`` made to the wrapper, ``attempts`` sent to the inner model, ``retries``
    among them, ``waited`` seconds of backoff, and calls stopped by their deadline."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    waited: float = 0.0
    deadline_exceeded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _models_within(model: Model) -> Iterator[Model]:
    """Every model in a stack, following wrappers and a fallback's members."""
    yield model
    if isinstance(model, WrapperModel):
        members: Sequence[Model] = getattr(model, "models", None) or (model.inner,)
        for member in members:
            yield from _models_within(member)


class RetryModel(WrapperModel):
    """Retries the inner model's transient failures.

    Args:
        max_attempts: attempts per call, the first included.
        base_delay, max_delay: the backoff before retry ``n`` is drawn uniformly from
            ``[0, min(max_delay, base_delay * 2**(n-1))]`` (full jitter), or is that cap
            with ``jitter=False``. A ``retry_after`` on the error raises it to at least
            that long.
        deadline: the overall deadline in seconds when the request sets no
            ``settings.timeout``. No wait runs past it, and attempts are cut off at it;
            the call then fails with :class:`ModelTimeoutError` chained from the last
            error.
        sleep, clock, rng: injectable for tests (``asyncio.sleep``, ``time.monotonic``,
            a ``random.Random``).

    Raises:
        ConfigError: a bad setting, or ``inner`` already contains a RetryModel.
    """

    def __init__(
        self,
        inner: Model,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 20.0,
        jitter: bool = True,
        deadline: float | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        for layer in _models_within(inner):
            if isinstance(layer, RetryModel):
                raise ConfigError(
                    "retry",
                    f"{inner!r} already contains a RetryModel: use one retry layer per "
                    f"stack, or the attempts multiply",
                )
        if max_attempts < 1:
            raise ConfigError("max_attempts", f"must be >= 1, got {max_attempts}")
        if base_delay < 0 or max_delay < base_delay:
            raise ConfigError(
                "base_delay", f"need 0 <= base_delay <= max_delay, got {base_delay}, {max_delay}"
            )
        if deadline is not None and deadline <= 0:
            raise ConfigError("deadline", f"must be > 0 seconds or None, got {deadline}")
        super().__init__(inner)
        self.max_attempts, self.base_delay, self.max_delay = max_attempts, base_delay, max_delay
        self.jitter, self.deadline = jitter, deadline
        self.sleep = sleep or asyncio.sleep
        self.clock = clock or time.monotonic
        self._random = (rng or random.Random()).random
        self.stats = RetryStats()

    def backoff(self, retry: int, err: BaseException | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based) after ``err``."""
        cap = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        delay = cap * self._random() if self.jitter else cap
        if isinstance(err, ModelHTTPError) and err.retry_after is not None:
            return max(delay, err.retry_after)
        return delay

    def timeout_of(self, requests: Sequence[ModelRequest]) -> float | None:
        """The overall deadline: the tightest request timeout, else the wrapper's."""
        timeouts = [r.settings.timeout for r in requests if r.settings.timeout is not None]
        return min(timeouts) if timeouts else self.deadline

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        return await self._run(self.timeout_of((request,)), lambda: self.inner.arequest(request))

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        if not self.inner.supports_batching:
            return await Model.abatch(self, requests)  # each request retried on its own
        return await self._run(self.timeout_of(requests), lambda: self.inner.abatch(requests))

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        # Retried only until the first event: after that the caller has seen output.
        async def open_stream() -> tuple[AsyncIterator[StreamEvent], StreamEvent | None]:
            stream = self.inner.astream(request)
            try:
                return stream, await anext(stream)
            except StopAsyncIteration:
                return stream, None
            except BaseException:
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
                raise

        stream, first = await self._run(self.timeout_of((request,)), open_stream)
        if first is None:
            return
        yield first
        async for event in stream:
            yield event

    async def _run(self, timeout: float | None, call: Callable[[], Awaitable[T]]) -> T:
        self.stats.calls += 1
        deadline_at = None if timeout is None else self.clock() + timeout
        attempt = 0
        while True:
            attempt += 1
            self.stats.attempts += 1
            try:
                if deadline_at is None:
                    return await call()
                async with asyncio.timeout(deadline_at - self.clock()):
                    return await call()
            except TimeoutError as err:  # asyncio.timeout fired: the overall deadline
                raise self._deadline_error(timeout, attempt) from err
            except ModelError as err:
                if attempt >= self.max_attempts or not is_retryable(err):
                    raise
                delay = self.backoff(attempt, err)
                if deadline_at is not None and self.clock() + delay >= deadline_at:
                    # Waiting would leave no time for another attempt: stop now, not later.
                    raise self._deadline_error(timeout, attempt) from err
            self.stats.retries += 1
            self.stats.waited += delay
            await self.sleep(delay)

    def _deadline_error(self, timeout: float | None, attempts: int) -> ModelTimeoutError:
        self.stats.deadline_exceeded += 1
        return ModelTimeoutError(
            f"deadline of {timeout:g} s reached after {attempts} attempt(s)", model=self.model_id
        )
