"""RateLimitedModel: keep a backend's requests and tokens per minute under its limits.

A :class:`RateLimiter` holds two token buckets (requests, tokens) and may be shared by
several wrappers (one backend, many agents; thread-safe). A call reserves one request
and its estimated tokens up front, waits off any shortfall with ``asyncio.sleep``, and
after the reply the token bucket is corrected with the real usage. Reservations are
served in arrival order: each caller takes its share at once (the bucket may go into
debt) and sleeps until the debt it joined is paid off, so no caller starves.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llmagentos.exceptions import ConfigError, ModelTimeoutError
from llmagentos.llm.base import Model, WrapperModel
from llmagentos.llm.types import ModelRequest, ModelResponse, StreamEvent, Usage

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_COMPLETION_TOKENS",
    "LimiterStats",
    "RateLimitedModel",
    "RateLimiter",
    "TokenBucket",
    "estimate_tokens",
]

CHARS_PER_TOKEN = 4
DEFAULT_COMPLETION_TOKENS = 256
"""Completion tokens assumed when a request sets no ``max_tokens`` (corrected afterwards)."""
_PER_MESSAGE_TOKENS = 4  # role and separators, as chat templates add them


def estimate_tokens(request: ModelRequest) -> int:
    """Tokens a request may use: ~4 characters per prompt token plus ``max_tokens``."""
    chars = 0
    for message in request.messages:
        chars += len(message.content or "")
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    if request.output_schema is not None:
        chars += len(json.dumps(request.output_schema))
    prompt = -(-chars // CHARS_PER_TOKEN) + _PER_MESSAGE_TOKENS * len(request.messages)
    return prompt + (request.settings.max_tokens or DEFAULT_COMPLETION_TOKENS)


class TokenBucket:
    """An allowance refilled at ``per_minute / 60`` a second, up to ``capacity``.

    ``capacity`` defaults to one minute's allowance, as providers meter per minute.
    The level may go negative: that is debt, which later callers wait off.
    """

    def __init__(self, per_minute: float, *, capacity: float | None = None) -> None:
        if per_minute <= 0:
            raise ConfigError("per_minute", f"must be > 0, got {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = capacity if capacity is not None else per_minute
        self.level = self.capacity
        self._updated: float | None = None

    def _refill(self, now: float) -> None:
        if self._updated is not None:
            self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    def reserve(self, amount: float, now: float) -> float:
        """Take ``amount``; return the seconds to wait until the bucket is out of debt."""
        self._refill(now)
        self.level -= amount
        return 0.0 if self.level >= 0 else -self.level / self.rate

    def give_back(self, amount: float, now: float) -> None:
        """Return ``amount`` (negative: take more, e.g. a call used more than reserved)."""
        self._refill(now)
        self.level = min(self.capacity, self.level + amount)


@dataclass
class LimiterStats:
    acquired: int = 0
    waits: int = 0
    waited: float = 0.0
    rejected: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RateLimiter:
    """Requests and tokens per minute for one backend; share it between wrappers."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if requests_per_minute is None and tokens_per_minute is None:
            raise ConfigError("rate_limit", "set requests_per_minute and/or tokens_per_minute")
        self.requests = None if requests_per_minute is None else TokenBucket(requests_per_minute)
        self.tokens = None if tokens_per_minute is None else TokenBucket(tokens_per_minute)
        self.clock, self.sleep = clock, sleep
        self.stats = LimiterStats()
        self._lock = threading.Lock()  # buckets are shared across threads and event loops

    async def acquire(
        self, tokens: int = 0, *, requests: int = 1, timeout: float | None = None, model: str = ""
    ) -> None:
        """Reserve ``requests`` and ``tokens``, sleeping until they are available.

        Raises:
            ModelTimeoutError: the wait would pass ``timeout``; nothing stays reserved.
        """
        with self._lock:
            now = self.clock()
            wait = 0.0
            if self.requests is not None:
                wait = self.requests.reserve(requests, now)
            if self.tokens is not None:
                wait = max(wait, self.tokens.reserve(tokens, now))
            if timeout is not None and wait > timeout:
                self._give_back(requests, tokens, now)
                self.stats.rejected += 1
                raise ModelTimeoutError(
                    f"rate limit needs a {wait:.2f} s wait, past the call's {timeout:g} s deadline",
                    model=model,
                )
            self.stats.acquired += 1
        if wait > 0:
            self.stats.waits += 1
            self.stats.waited += wait
            try:
                await self.sleep(wait)
            except BaseException:  # cancelled while waiting: the call never happens
                self.release(tokens, requests=requests)
                raise

    def release(self, tokens: int = 0, *, requests: int = 0) -> None:
        """Give back a reservation that was not used (negative ``tokens`` takes more)."""
        with self._lock:
            self._give_back(requests, tokens, self.clock())

    def _give_back(self, requests: int, tokens: int, now: float) -> None:
        if self.requests is not None and requests:
            self.requests.give_back(requests, now)
        if self.tokens is not None and tokens:
            self.tokens.give_back(tokens, now)


class RateLimitedModel(WrapperModel):
    """Waits for the rate limiter before each call; never waits past the call's deadline.

    Pass ``requests_per_minute`` and/or ``tokens_per_minute`` for a private limiter, or
    ``limiter`` to share one. A reply marked ``cached`` (a cache inside this wrapper)
    gives its reservation back; a failed call keeps it, as the backend may have
    counted it.
    """

    def __init__(
        self,
        inner: Model,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if limiter is not None and (requests_per_minute or tokens_per_minute):
            raise ConfigError("limiter", "pass a shared limiter or per-minute rates, not both")
        super().__init__(inner)
        self.limiter = limiter or RateLimiter(requests_per_minute, tokens_per_minute)

    def _estimate(self, requests: Sequence[ModelRequest]) -> int:
        if self.limiter.tokens is None:
            return 0  # skip the estimate's cost when tokens aren't limited
        return sum(estimate_tokens(request) for request in requests)

    async def _acquire(self, requests: Sequence[ModelRequest]) -> int:
        estimate = self._estimate(requests)
        timeouts = [r.settings.timeout for r in requests if r.settings.timeout is not None]
        await self.limiter.acquire(
            estimate,
            requests=len(requests),
            timeout=min(timeouts) if timeouts else None,
            model=self.model_id,
        )
        return estimate

    def _settle(self, estimate: int, usage: Usage, cached: bool = False) -> None:
        if cached:
            self.limiter.release(estimate, requests=1)
        elif usage.total_tokens:  # no usage reported: keep the estimate
            self.limiter.release(estimate - usage.total_tokens)

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        estimate = await self._acquire((request,))
        response = await self.inner.arequest(request)
        self._settle(estimate, response.usage, response.cached)
        return response

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        if not self.inner.supports_batching:
            return await Model.abatch(self, requests)
        estimate = await self._acquire(requests)
        responses = await self.inner.abatch(requests)
        used = sum((response.usage for response in responses), Usage())
        self._settle(estimate, used)
        return responses

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        estimate = await self._acquire((request,))
        usage = Usage()
        async for event in self.inner.astream(request):
            usage = event.usage or usage
            yield event
        self._settle(estimate, usage)
