"""UsageTracker and AccountedModel: totals, prices, snapshot, budgets, errors, threads."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

import pytest

from llmagentos.exceptions import BudgetExceeded, ConfigError, ModelConnectionError
from llmagentos.llm.base import Model
from llmagentos.llm.fallback import FallbackModel
from llmagentos.llm.testing import ScriptedModel
from llmagentos.llm.types import Message, ModelRequest, ModelResponse, StreamEvent, Usage
from llmagentos.llm.usage import AccountedModel, UsageTracker

PRICES = {"m": (1.0, 2.0), "cheap": (0.1, 0.2)}


def req() -> ModelRequest:
    return ModelRequest(messages=(Message.user("hi"),))


def reply(prompt: int, completion: int, **kwargs: object) -> ModelResponse:
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion)
    return ModelResponse(text="x", usage=usage, **kwargs)  # type: ignore[arg-type]


async def test_usage_and_cost_are_recorded_per_agent() -> None:
    tracker = UsageTracker(PRICES)
    inner = ScriptedModel([reply(1000, 500), reply(2000, 0), reply(10, 10)], model_id="m")
    planner = AccountedModel(inner, tracker, agent="planner")
    critic = AccountedModel(inner, tracker, agent="critic")
    await planner.arequest(req())
    await planner.arequest(req())
    await critic.arequest(req())
    usage = tracker.usage("planner")
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (2, 3000, 500)
    assert usage.cost == pytest.approx((3000 * 1.0 + 500 * 2.0) / 1e6)
    assert tracker.agents() == ["critic", "planner"]
    assert tracker.total().total_tokens == 3520
    assert tracker.usage("nobody").requests == 0


async def test_price_is_looked_up_by_the_model_that_answered() -> None:
    tracker = UsageTracker(PRICES)
    first = ScriptedModel([ModelConnectionError("down")], model_id="m")
    second = ScriptedModel([reply(1_000_000, 0, model="cheap")], model_id="cheap")
    model = AccountedModel(FallbackModel([first, second]), tracker, agent="a")
    await model.arequest(req())
    assert tracker.usage("a").cost == pytest.approx(0.1)
    unpriced = AccountedModel(ScriptedModel([reply(5, 5)], model_id="other"), tracker, agent="b")
    await unpriced.arequest(req())
    assert tracker.usage("b").cost == 0.0 and tracker.usage("b").total_tokens == 10


async def test_errors_and_cache_hits_are_counted_without_tokens() -> None:
    tracker = UsageTracker(PRICES)
    inner = ScriptedModel([ModelConnectionError("x"), reply(5, 5, cached=True)], model_id="m")
    model = AccountedModel(inner, tracker, agent="a")
    with pytest.raises(ModelConnectionError):
        await model.arequest(req())
    await model.arequest(req())
    usage = tracker.usage("a")
    assert (usage.requests, usage.errors, usage.cached, usage.total_tokens) == (2, 1, 1, 0)


async def test_token_budget_stops_calls_once_used_up_and_reports_the_overshoot() -> None:
    tracker = UsageTracker()
    inner = ScriptedModel([reply(60, 0), reply(60, 10), "never"])
    model = AccountedModel(inner, tracker, agent="a", token_budget=100)
    await model.arequest(req())
    await model.arequest(req())  # starts under the budget, crosses it: still recorded
    with pytest.raises(BudgetExceeded) as info:
        await model.arequest(req())
    err = info.value
    assert (err.agent, err.resource, err.limit, err.used) == ("a", "tokens", 100, 130)
    assert len(inner.requests) == 2


async def test_cost_budget_is_shared_by_every_wrapper_of_the_agent() -> None:
    tracker = UsageTracker(PRICES)
    first = AccountedModel(
        ScriptedModel([reply(1_000_000, 0)], model_id="m"), tracker, agent="a", cost_budget=0.5
    )
    other = AccountedModel(ScriptedModel(["never"]), tracker, agent="a", cost_budget=0.5)
    await first.arequest(req())
    with pytest.raises(BudgetExceeded, match="cost budget") as info:
        await other.arequest(req())
    assert info.value.used == pytest.approx(1.0)
    tracker.reset("a")
    assert tracker.usage("a").cost == 0


def test_snapshot_is_json() -> None:
    tracker = UsageTracker(PRICES)
    tracker.record("a", usage=Usage(prompt_tokens=3, completion_tokens=4), models=("m",))
    tracker.record("b", error=True)
    snap = json.loads(json.dumps(tracker.snapshot()))
    assert snap["agents"]["a"]["total_tokens"] == 7
    assert snap["agents"]["b"]["errors"] == 1
    assert snap["total"]["requests"] == 2
    tracker.reset()
    assert tracker.snapshot() == {"agents": {}, "total": tracker.total().to_dict()}


def test_records_from_many_threads_add_up() -> None:
    tracker = UsageTracker(PRICES)

    def work(agent: str) -> None:
        for _ in range(2000):
            tracker.record(agent, usage=Usage(prompt_tokens=1, completion_tokens=1), models=("m",))

    threads = [threading.Thread(target=work, args=(f"a{i % 2}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.usage("a0").requests == 4000 and tracker.total().total_tokens == 16000


async def test_concurrent_tasks_add_up() -> None:
    tracker = UsageTracker()
    model = AccountedModel(ScriptedModel([reply(1, 1)] * 50), tracker, agent="a")
    await asyncio.gather(*(model.arequest(req()) for _ in range(50)))
    assert tracker.usage("a").total_tokens == 100


class Stream(Model):
    model_id = "m"

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        raise NotImplementedError

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        yield StreamEvent(text="a")
        if self.fail:
            raise ModelConnectionError("cut")
        yield StreamEvent(finish_reason="stop", usage=Usage(prompt_tokens=7, completion_tokens=3))


async def test_streams_are_accounted_when_done_failed_or_abandoned() -> None:
    tracker = UsageTracker(PRICES)
    done = AccountedModel(Stream(), tracker, agent="done")
    _ = [event async for event in done.astream(req())]
    assert tracker.usage("done").total_tokens == 10 and tracker.usage("done").cost > 0
    failed = AccountedModel(Stream(fail=True), tracker, agent="failed")
    with pytest.raises(ModelConnectionError):
        _ = [event async for event in failed.astream(req())]
    assert tracker.usage("failed").errors == 1 and tracker.usage("failed").requests == 1
    left = AccountedModel(Stream(), tracker, agent="left")
    stream = left.astream(req())
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert tracker.usage("left").requests == 1 and tracker.usage("left").errors == 0


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match=r"prices\.m"):
        UsageTracker({"m": (-1.0, 0.0)})
    with pytest.raises(ConfigError, match="token_budget"):
        AccountedModel(ScriptedModel([]), UsageTracker(), agent="a", token_budget=-1)
    with pytest.raises(ConfigError, match="cost_budget"):
        AccountedModel(ScriptedModel([]), UsageTracker(), agent="a", cost_budget=-1)
