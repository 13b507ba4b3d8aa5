"""RetryModel: what is retried, backoff, Retry-After, deadlines, streams, one layer per stack;
plus composition of the wrappers and one end-to-end run against the fault server."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmagentos.exceptions import (
    ConfigError,
    ModelConnectionError,
    ModelHTTPError,
    ModelOutputError,
    ModelTimeoutError,
)
from llmagentos.llm.base import Model
from llmagentos.llm.cache import CachedModel
from llmagentos.llm.fallback import FallbackModel
from llmagentos.llm.limits import RateLimitedModel
from llmagentos.llm.openai_compat import OpenAICompatModel
from llmagentos.llm.retry import RetryModel, is_retryable
from llmagentos.llm.testing import FunctionModel, ScriptedModel, allow_network_models
from llmagentos.llm.types import Message, ModelRequest, ModelResponse, ModelSettings, StreamEvent
from llmagentos.llm.usage import AccountedModel, UsageTracker
from tests.llm import fault_server


def req(**settings: Any) -> ModelRequest:
    settings.setdefault("temperature", 0)
    return ModelRequest(messages=(Message.user("hi"),), settings=ModelSettings(**settings))


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def retrying(inner: Model, fake: FakeTime, **kwargs: Any) -> RetryModel:
    kwargs.setdefault("jitter", False)
    return RetryModel(inner, sleep=fake.sleep, clock=fake.clock, **kwargs)


async def test_transient_errors_are_retried_until_success() -> None:
    fake = FakeTime()
    inner = ScriptedModel([ModelConnectionError("reset"), ModelTimeoutError("slow"), "ok"])
    model = retrying(inner, fake)
    assert (await model.arequest(req())).text == "ok"
    assert fake.sleeps == [0.5, 1.0]
    assert model.stats.to_dict() == {
        "calls": 1, "attempts": 3, "retries": 2, "waited": 1.5, "deadline_exceeded": 0,
    }  # fmt: skip


async def test_backoff_doubles_up_to_max_delay_then_gives_up() -> None:
    fake = FakeTime()
    inner = ScriptedModel([ModelHTTPError(503)] * 5)
    model = retrying(inner, fake, max_attempts=5, base_delay=1.0, max_delay=3.0)
    with pytest.raises(ModelHTTPError) as info:
        await model.arequest(req())
    assert info.value.status_code == 503
    assert fake.sleeps == [1.0, 2.0, 3.0, 3.0] and len(inner.requests) == 5


def test_full_jitter_draws_below_the_cap() -> None:
    model = RetryModel(ScriptedModel([]), base_delay=1.0, max_delay=4.0, rng=random.Random(7))
    delays = [model.backoff(retry) for retry in (1, 2, 3, 4, 5) for _ in range(50)]
    caps = [cap for cap in (1.0, 2.0, 4.0, 4.0, 4.0) for _ in range(50)]
    assert all(0 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))
    assert len(set(delays)) > 200  # jittered, not fixed


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable(ModelHTTPError(status))


@pytest.mark.parametrize(
    "error",
    [
        ModelHTTPError(400),
        ModelHTTPError(401),
        ModelHTTPError(404),
        ModelHTTPError(422),
        ModelOutputError("bad json"),
        ValueError("bug"),
    ],
)
async def test_permanent_errors_fail_on_the_first_attempt(error: Exception) -> None:
    fake = FakeTime()
    inner = ScriptedModel([error, "never"])
    with pytest.raises(type(error)):
        await retrying(inner, fake).arequest(req())
    assert len(inner.requests) == 1 and fake.sleeps == []


async def test_retry_after_sets_the_minimum_wait() -> None:
    fake = FakeTime()
    inner = ScriptedModel([ModelHTTPError(429, retry_after=7.5), "ok"])
    model = retrying(inner, fake, jitter=True, rng=random.Random(1))
    assert (await model.arequest(req())).text == "ok"
    assert fake.sleeps == [7.5]


async def test_deadline_stops_retrying_with_a_chained_timeout() -> None:
    fake = FakeTime()
    inner = ScriptedModel([ModelHTTPError(503)] * 4)
    model = retrying(inner, fake)
    with pytest.raises(ModelTimeoutError, match="deadline of 2 s") as info:
        await model.arequest(req(timeout=2.0))
    assert isinstance(info.value.__cause__, ModelHTTPError)
    # Waits 0.5 and 1.0 fit; the next (2.0) would end past t=2: no sleep past the deadline.
    assert fake.sleeps == [0.5, 1.0] and fake.now < 2.0
    assert len(inner.requests) == 3 and model.stats.deadline_exceeded == 1


async def test_retry_after_beyond_the_deadline_fails_at_once() -> None:
    fake = FakeTime()
    inner = ScriptedModel([ModelHTTPError(429, retry_after=30), "ok"])
    with pytest.raises(ModelTimeoutError):
        await retrying(inner, fake, deadline=10).arequest(req())
    assert fake.sleeps == [] and len(inner.requests) == 1


async def test_request_timeout_wins_over_the_wrappers_deadline() -> None:
    model = RetryModel(ScriptedModel([]), deadline=5)
    assert model.timeout_of([req()]) == 5
    assert model.timeout_of([req(timeout=1), req(timeout=3)]) == 1


async def test_the_deadline_cuts_a_slow_attempt_in_real_time() -> None:
    async def slow(request: ModelRequest) -> str:
        await asyncio.sleep(5)
        return "late"

    model = RetryModel(FunctionModel(slow))
    started = time.perf_counter()
    with pytest.raises(ModelTimeoutError, match="deadline"):
        await model.arequest(req(timeout=0.05))
    assert time.perf_counter() - started < 1.0
    assert model.stats.attempts == 1


async def test_real_sleeps_on_small_delays() -> None:
    inner = ScriptedModel([ModelConnectionError("a"), ModelHTTPError(500), "ok"])
    model = RetryModel(inner, base_delay=0.02, jitter=False)
    started = time.perf_counter()
    assert (await model.arequest(req())).text == "ok"
    assert time.perf_counter() - started >= 0.06 - 0.005
    assert model.stats.waited == pytest.approx(0.06)


def test_only_one_retry_layer_per_stack() -> None:
    inner = ScriptedModel([])
    with pytest.raises(ConfigError, match="already contains a RetryModel"):
        RetryModel(RetryModel(inner))
    with pytest.raises(ConfigError, match="already contains a RetryModel"):
        RetryModel(CachedModel(RateLimitedModel(RetryModel(inner), requests_per_minute=60)))
    with pytest.raises(ConfigError, match="already contains a RetryModel"):
        RetryModel(FallbackModel([ScriptedModel([]), RetryModel(inner)]))
    FallbackModel([RetryModel(inner), RetryModel(ScriptedModel([]))])  # siblings are fine


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_delay": -1}, {"max_delay": 0.1}, {"deadline": 0}]
)
def test_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RetryModel(ScriptedModel([]), **kwargs)


class FlakyStream(Model):
    """Fails ``before`` times before the first event, then fails mid-stream if ``mid``."""

    model_id = "test:flaky"

    def __init__(self, before: int, mid: bool = False) -> None:
        self.before, self.mid, self.opened = before, mid, 0

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        raise NotImplementedError

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.opened += 1
        if self.opened <= self.before:
            raise ModelConnectionError("refused")
        yield StreamEvent(text="a")
        if self.mid:
            raise ModelConnectionError("cut")
        yield StreamEvent(text="b", finish_reason="stop")


async def collect(stream: AsyncIterator[StreamEvent], seen: list[str]) -> None:
    async for event in stream:
        seen.append(event.text)


async def test_streams_retry_only_before_the_first_event() -> None:
    fake = FakeTime()
    inner = FlakyStream(before=2)
    texts = [event.text async for event in retrying(inner, fake).astream(req())]
    assert texts == ["a", "b"] and inner.opened == 3
    broken = FlakyStream(before=0, mid=True)
    seen: list[str] = []
    with pytest.raises(ModelConnectionError, match="cut"):
        await collect(retrying(broken, fake).astream(req()), seen)
    assert seen == ["a"] and broken.opened == 1


# -- composition -------------------------------------------------------------------------


async def test_full_stack_works_and_a_cache_hit_makes_no_attempt() -> None:
    fake = FakeTime()
    inner = ScriptedModel([ModelHTTPError(503), "answer"])
    tracker = UsageTracker()
    retry = retrying(RateLimitedModel(inner, requests_per_minute=600), fake)
    model = AccountedModel(CachedModel(retry), tracker, agent="a")
    assert (await model.arequest(req())).text == "answer"
    assert retry.stats.attempts == 2
    hit = await model.arequest(req())
    assert hit.cached and retry.stats.attempts == 2 and len(inner.requests) == 2
    assert tracker.usage("a").requests == 2 and tracker.usage("a").cached == 1


async def test_errors_are_not_cached_through_the_stack() -> None:
    fake = FakeTime()
    inner = ScriptedModel([ModelHTTPError(400), "fine"])
    model = CachedModel(retrying(inner, fake))
    with pytest.raises(ModelHTTPError):
        await model.arequest(req())
    assert (await model.arequest(req())).text == "fine"
    assert len(inner.requests) == 2


async def test_retry_around_a_fallback_retries_the_whole_chain() -> None:
    fake = FakeTime()
    first = ScriptedModel([ModelHTTPError(503), ModelHTTPError(503)], model_id="a")
    second = ScriptedModel([ModelConnectionError("down"), "from b"], model_id="b")
    model = retrying(FallbackModel([first, second]), fake)
    reply = await model.arequest(req())
    assert reply.text == "from b" and model.stats.attempts == 2


# -- end to end: the fault server ------------------------------------------------------------


async def test_against_the_fault_server() -> None:
    elapsed = 0.0

    async def run(behaviours: list[Any]) -> tuple[RetryModel, Any, BaseException | None]:
        nonlocal elapsed
        started = time.perf_counter()
        async with fault_server.FaultServer(behaviours) as server:
            model = RetryModel(
                OpenAICompatModel("m", base_url=server.url, api_key=""),
                base_delay=0.01,
                max_delay=0.05,
            )
            error: BaseException | None = None
            try:
                await model.arequest(req(timeout=10))
            except Exception as err:
                error = err
            finally:
                await model.aclose()
        elapsed = time.perf_counter() - started
        return model, server, error

    with allow_network_models():
        model, server, error = await run([fault_server.rate_limited("1"), fault_server.chat()])
        assert error is None and server.count == 2
        assert model.stats.waited >= 1.0 and elapsed >= 1.0
        model, server, error = await run([fault_server.status(500)])
        assert isinstance(error, ModelHTTPError) and error.status_code == 500
        assert server.count == model.max_attempts == 4
        model, server, error = await run([fault_server.status(400), fault_server.chat()])
        assert isinstance(error, ModelHTTPError) and error.status_code == 400
        assert server.count == 1
