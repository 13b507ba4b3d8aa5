"""RateLimitedModel and RateLimiter: buckets, arrival order, deadlines, corrections, sharing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmagentos.exceptions import ConfigError, ModelTimeoutError
from llmagentos.llm.base import Model
from llmagentos.llm.limits import (
    DEFAULT_COMPLETION_TOKENS,
    RateLimitedModel,
    RateLimiter,
    TokenBucket,
    estimate_tokens,
)
from llmagentos.llm.testing import FunctionModel, ScriptedModel
from llmagentos.llm.types import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamEvent,
    Tool,
    Usage,
)


def req(text: str = "hi", **settings: Any) -> ModelRequest:
    return ModelRequest(messages=(Message.user(text),), settings=ModelSettings(**settings))


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(fake: FakeTime, rpm: float | None = None, tpm: float | None = None) -> RateLimiter:
    return RateLimiter(rpm, tpm, clock=fake.clock, sleep=fake.sleep)


def reply(prompt: int, completion: int) -> ModelResponse:
    return ModelResponse(text="x", usage=Usage(prompt_tokens=prompt, completion_tokens=completion))


def test_token_estimate_counts_prompt_characters_and_completion_allowance() -> None:
    assert estimate_tokens(req("x" * 40, max_tokens=10)) == 10 + 4 + 10
    assert estimate_tokens(req("x" * 41)) == 11 + 4 + DEFAULT_COMPLETION_TOKENS
    with_tool = ModelRequest(messages=(Message.user(""),), tools=(Tool(name="go"),))
    assert estimate_tokens(with_tool) > 4 + DEFAULT_COMPLETION_TOKENS


def test_bucket_refills_per_second_up_to_capacity_and_tracks_debt() -> None:
    bucket = TokenBucket(60, capacity=2)  # one a second
    assert bucket.reserve(2, now=0.0) == 0.0
    assert bucket.reserve(1, now=0.0) == pytest.approx(1.0)  # one in debt
    assert bucket.reserve(1, now=0.5) == pytest.approx(1.5)  # queued behind it
    bucket.give_back(100, now=0.5)
    assert bucket.level == 2


async def test_requests_per_minute_waits_off_the_shortfall() -> None:
    fake = FakeTime()
    model = RateLimitedModel(FunctionModel(lambda r: "x"), limiter=limiter(fake, rpm=60))
    for _ in range(60):  # a full minute's allowance goes at once
        await model.arequest(req())
    assert fake.sleeps == []
    await model.arequest(req())
    assert fake.sleeps == [pytest.approx(1.0)]


async def test_waiters_are_served_in_arrival_order() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    shared = RateLimiter(requests_per_minute=60, clock=lambda: 0.0, sleep=sleep)
    assert shared.requests is not None
    shared.requests.level = 0
    await asyncio.gather(*(shared.acquire() for _ in range(3)))
    # Each reserved its slot on arrival: one second apart, nobody overtakes.
    assert waits == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(3.0)]
    assert shared.stats.waits == 3 and shared.stats.waited == pytest.approx(6.0)


async def test_tokens_are_corrected_with_the_real_usage() -> None:
    fake = FakeTime()
    shared = limiter(fake, tpm=10_000)
    tokens = shared.tokens
    assert tokens is not None
    request = req("x" * 40, max_tokens=100)
    estimate = estimate_tokens(request)
    model = RateLimitedModel(ScriptedModel([reply(14, 6), reply(14, 3000)]), limiter=shared)
    await model.arequest(request)
    assert tokens.level == pytest.approx(10_000 - 20)
    await model.arequest(request)
    assert tokens.level == pytest.approx(10_000 - 20 - 3014)
    assert estimate == 114


async def test_a_wait_past_the_deadline_fails_without_calling_or_reserving() -> None:
    fake = FakeTime()
    shared = limiter(fake, rpm=6)  # one per 10 s
    inner = ScriptedModel(["a", "b"])
    model = RateLimitedModel(inner, limiter=shared)
    assert shared.requests is not None
    shared.requests.level = 0
    with pytest.raises(ModelTimeoutError, match="past the call's 5 s deadline"):
        await model.arequest(req(timeout=5))
    assert inner.requests == [] and shared.requests.level == 0 and fake.sleeps == []
    assert (await model.arequest(req(timeout=15))).text == "a"
    assert fake.sleeps == [pytest.approx(10.0)] and shared.stats.rejected == 1


async def test_a_shared_limiter_meters_every_wrapper() -> None:
    fake = FakeTime()
    shared = limiter(fake, rpm=2)
    first = RateLimitedModel(FunctionModel(lambda r: "1"), limiter=shared)
    second = RateLimitedModel(FunctionModel(lambda r: "2"), limiter=shared)
    await first.arequest(req())
    await second.arequest(req())
    assert fake.sleeps == []
    await first.arequest(req())
    assert fake.sleeps == [pytest.approx(30.0)]


async def test_cached_replies_give_the_reservation_back() -> None:
    fake = FakeTime()
    shared = limiter(fake, rpm=1, tpm=1000)
    cached = ModelResponse(text="x", cached=True)
    model = RateLimitedModel(ScriptedModel([cached, cached]), limiter=shared)
    await model.arequest(req())
    await model.arequest(req())
    assert fake.sleeps == []
    assert shared.tokens is not None and shared.tokens.level == 1000


async def test_cancelled_waiters_give_their_reservation_back() -> None:
    shared = RateLimiter(requests_per_minute=60)
    assert shared.requests is not None
    shared.requests.level = 0
    waiter = asyncio.create_task(shared.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert shared.requests.level == pytest.approx(0.0, abs=0.5)  # refilled while it waited


async def test_real_waits_on_a_small_shortfall() -> None:
    model = RateLimitedModel(FunctionModel(lambda r: "x"), requests_per_minute=1200)
    assert model.limiter.requests is not None
    model.limiter.requests.level = 0  # 20 a second: the next call waits ~50 ms
    started = time.perf_counter()
    await model.arequest(req())
    assert 0.04 <= time.perf_counter() - started < 1.0


def test_a_limiter_shared_across_threads_keeps_exact_counts() -> None:
    fake = FakeTime()
    shared = limiter(fake, rpm=1_000_000, tpm=1_000_000_000)

    def hammer() -> None:
        async def calls() -> None:
            for _ in range(500):
                await shared.acquire(10)

        asyncio.run(calls())

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert shared.requests is not None and shared.tokens is not None
    assert shared.requests.level == 1_000_000 - 2000
    assert shared.tokens.level == 1_000_000_000 - 20_000
    assert shared.stats.acquired == 2000


class Streamer(Model):
    model_id = "test:stream"

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        raise NotImplementedError

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        yield StreamEvent(text="a")
        yield StreamEvent(finish_reason="stop", usage=Usage(prompt_tokens=5, completion_tokens=5))


async def test_streams_settle_with_the_final_usage() -> None:
    fake = FakeTime()
    shared = limiter(fake, tpm=1000)
    model = RateLimitedModel(Streamer(), limiter=shared)
    assert [event.text async for event in model.astream(req(max_tokens=50))] == ["a", ""]
    assert shared.tokens is not None and shared.tokens.level == pytest.approx(990)


async def test_batches_reserve_for_every_request() -> None:
    class Batching(FunctionModel):
        supports_batching = True

    fake = FakeTime()
    shared = limiter(fake, rpm=3)
    model = RateLimitedModel(Batching(lambda r: "x"), limiter=shared)
    assert len(await model.abatch([req(), req(), req()])) == 3
    assert shared.requests is not None and shared.requests.level == 0


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="requests_per_minute"):
        RateLimiter()
    with pytest.raises(ConfigError, match="not both"):
        RateLimitedModel(ScriptedModel([]), requests_per_minute=1, limiter=RateLimiter(1))
    with pytest.raises(ConfigError, match="per_minute"):
        RateLimitedModel(ScriptedModel([]), tokens_per_minute=-5)
