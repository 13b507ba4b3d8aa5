"""The kernel's LLM scheduler: limits, order, fairness, budgets, deadlines, batching."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from llmagentos.exceptions import (
    BudgetExceeded,
    ConfigError,
    ModelError,
    ModelTimeoutError,
    UnknownModelError,
)
from llmagentos.kernel import ScheduledModel, Scheduler, UnknownBackendError
from llmagentos.kernel.queues import WaitQueue
from llmagentos.llm import (
    FunctionModel,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamEvent,
    Usage,
)

pytestmark = pytest.mark.timeout(60)


def ask(text: str = "hi", *, timeout: float | None = None) -> ModelRequest:
    return ModelRequest(messages=(Message.user(text),), settings=ModelSettings(timeout=timeout))


def text_of(request: ModelRequest) -> str:
    return request.messages[-1].content or ""


class Backend:
    """A mock backend: sleeps ``latency`` per call and records concurrency and order."""

    def __init__(self, latency: float = 0.002, *, slow: float = 10.0) -> None:
        self.latency = latency
        self.slow = slow  # seconds a request whose text is "slow" takes
        self.running = 0
        self.max_running = 0
        self.served: list[str] = []
        self.gate: asyncio.Event | None = None  # requests "gate" wait for it
        self._lock = threading.Lock()  # the sync-face test calls from several threads

    async def __call__(self, request: ModelRequest) -> str:
        text = text_of(request)
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.served.append(text)
        try:
            if text == "boom":
                raise ModelError("the backend failed on this request", model="test:function")
            if text == "gate" and self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.slow if text == "slow" else self.latency)
            return f"re:{text}"
        finally:
            with self._lock:
                self.running -= 1


def scheduler_with(backend: Backend, **kwargs: object) -> Scheduler:
    return Scheduler({"main": FunctionModel(backend)}, **kwargs)  # type: ignore[arg-type]


async def until(condition: object, timeout: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


# -- limits and completion ------------------------------------------------------------------


async def test_many_agents_all_complete_within_the_limit() -> None:
    backend = Backend(latency=0.001)
    scheduler = scheduler_with(backend, max_in_flight=8)

    async def agent(index: int) -> list[str]:
        model = scheduler.model_for(f"agent-{index}")
        return [(await model.arequest(ask(f"{index}.{k}"))).text or "" for k in range(5)]

    replies = await asyncio.gather(*(agent(i) for i in range(200)))

    assert replies[17] == [f"re:17.{k}" for k in range(5)]
    assert sum(len(r) for r in replies) == 1000
    assert backend.max_running == 8  # reached, never exceeded
    state = scheduler.state()
    assert (
        state["backends"]["main"] | {"completed": 1000, "running": 0, "waiting": 0}
        == (state["backends"]["main"])
    )
    assert all(a["requests"] == 5 and a["completed"] == 5 for a in state["agents"].values())


async def test_max_in_flight_per_backend() -> None:
    fast, slow = Backend(latency=0.002), Backend(latency=0.002)
    scheduler = Scheduler(
        {"fast": FunctionModel(fast), "slow": FunctionModel(slow)},
        max_in_flight={"fast": 5},
    )
    scheduler.add_backend("third", FunctionModel(Backend()), max_in_flight=1)
    on_fast = scheduler.model_for("a")  # the first backend is the default
    on_slow = scheduler.model_for("a", "slow")
    await asyncio.gather(*(m.arequest(ask()) for m in [on_fast, on_slow] * 30))
    assert fast.max_running == 5
    assert slow.max_running == 4  # names missing from the mapping get the default
    assert scheduler.state()["backends"]["third"]["max_in_flight"] == 1
    assert scheduler.state()["agents"]["a"]["completed"] == 60


async def test_a_backend_that_grows_lets_waiting_calls_run_at_once() -> None:
    backend = Backend()
    scheduler = Scheduler({"pool": FunctionModel(backend)}, max_in_flight=1)
    blocker = await hold_the_slot(backend, scheduler)
    waiting = [
        asyncio.create_task(scheduler.model_for("b").arequest(ask("gate"))) for _ in range(2)
    ]
    await until(lambda: scheduler.state()["backends"]["pool"]["waiting"] == 2)
    scheduler.set_max_in_flight("pool", 3)  # a second and third host came up
    await until(lambda: backend.running == 3)  # both waiting calls got the new slots
    assert scheduler.state()["backends"]["pool"]["max_in_flight"] == 3
    assert backend.gate is not None
    backend.gate.set()
    await asyncio.gather(blocker, *waiting)
    with pytest.raises(ConfigError):
        scheduler.set_max_in_flight("pool", 0)
    with pytest.raises(UnknownBackendError):
        scheduler.set_max_in_flight("nosuch", 2)


# -- order: priorities, fairness, weights ---------------------------------------------------


async def hold_the_slot(backend: Backend, scheduler: Scheduler) -> asyncio.Task[ModelResponse]:
    """Occupy the only slot with a call that waits for ``backend.gate``."""
    backend.gate = asyncio.Event()
    blocker = asyncio.create_task(scheduler.model_for("blocker").arequest(ask("gate")))
    await until(lambda: backend.running == 1)
    return blocker


async def test_higher_priority_runs_first() -> None:
    backend = Backend()
    scheduler = scheduler_with(backend, max_in_flight=1)
    blocker = await hold_the_slot(backend, scheduler)
    low = scheduler.model_for("low", priority=0)
    high = scheduler.model_for("high", priority=5)
    calls = [asyncio.create_task(low.arequest(ask(f"low{i}"))) for i in range(3)]
    await asyncio.sleep(0)
    calls += [asyncio.create_task(high.arequest(ask(f"high{i}"))) for i in range(3)]
    await until(lambda: scheduler.state()["backends"]["main"]["waiting"] == 6)
    assert backend.gate is not None
    backend.gate.set()
    await asyncio.gather(blocker, *calls)
    assert backend.served == ["gate", "high0", "high1", "high2", "low0", "low1", "low2"]


async def light_agent_waits(policy: str) -> list[float]:
    """A greedy agent queues 200 calls, then 10 light agents make one call each."""
    backend = Backend(latency=0.002)
    scheduler = scheduler_with(backend, max_in_flight=4, policy=policy)
    greedy = scheduler.model_for("greedy")
    flood = [asyncio.create_task(greedy.arequest(ask("g"))) for _ in range(200)]
    await until(lambda: scheduler.state()["backends"]["main"]["waiting"] >= 190)
    light = [scheduler.model_for(f"light-{i}").arequest(ask("l")) for i in range(10)]
    await asyncio.gather(*light, *flood)
    agents = scheduler.state()["agents"]
    assert agents["greedy"]["completed"] == 200
    return [agents[f"light-{i}"]["wait_p99_s"] for i in range(10)]


async def test_fair_policy_serves_light_agents_within_a_round_fifo_does_not() -> None:
    fair = await light_agent_waits("fair")
    fifo = await light_agent_waits("fifo")
    # fifo: behind ~190 calls = ~48 rounds of 2 ms; fair: within a few rounds.
    assert max(fair) < min(fifo) / 4, (fair, fifo)


async def test_weights_share_the_backend_in_proportion() -> None:
    backend = Backend(latency=0.0)
    scheduler = scheduler_with(backend, max_in_flight=1)
    blocker = await hold_the_slot(backend, scheduler)
    heavy = scheduler.model_for("heavy", weight=2.0)
    light = scheduler.model_for("light", weight=1.0)
    calls = [asyncio.create_task(heavy.arequest(ask("H"))) for _ in range(30)]
    calls += [asyncio.create_task(light.arequest(ask("L"))) for _ in range(30)]
    await until(lambda: scheduler.state()["backends"]["main"]["waiting"] == 60)
    assert backend.gate is not None
    backend.gate.set()
    await asyncio.gather(blocker, *calls)
    first = backend.served[1:31]
    assert 19 <= first.count("H") <= 21, first


def test_wait_queue_orders_by_priority_then_policy() -> None:
    alive = {"x", "a1", "a2", "a3", "b1", "p"}
    fair: WaitQueue[str] = WaitQueue("fair", lambda item: item in alive)
    fifo: WaitQueue[str] = WaitQueue("fifo", lambda item: item in alive)
    for queue in (fair, fifo):
        for item in ("a1", "a2", "a3"):
            queue.push(item, "a")
        queue.push("x", "a")
        queue.push("b1", "b")
        queue.push("p", "c", priority=1)
    alive.discard("x")  # cancelled: skipped when it surfaces
    assert [fair.pop() for _ in range(6)] == ["p", "a1", "b1", "a2", "a3", None]
    assert [fifo.pop() for _ in range(6)] == ["p", "a1", "a2", "a3", "b1", None]
    with pytest.raises(ValueError, match="policy"):
        WaitQueue("lifo", bool)  # type: ignore[arg-type]


# -- budgets --------------------------------------------------------------------------------


def costly(request: ModelRequest) -> ModelResponse:
    return ModelResponse(text="ok", usage=Usage(prompt_tokens=6, completion_tokens=4))


async def test_token_budget_stops_only_that_agent() -> None:
    scheduler = Scheduler({"main": FunctionModel(costly)})
    capped = scheduler.model_for("capped", token_budget=25)
    free = scheduler.model_for("free")
    for _ in range(3):  # 10, 20, 30 tokens: the third call starts under the budget
        await capped.arequest(ask())
    with pytest.raises(BudgetExceeded) as caught:
        await capped.arequest(ask())
    assert (caught.value.agent, caught.value.resource) == ("capped", "tokens")
    assert (caught.value.limit, caught.value.used) == (25, 30)
    await asyncio.gather(*(free.arequest(ask()) for _ in range(10)))
    agents = scheduler.state()["agents"]
    assert (
        agents["capped"] | {"completed": 3, "rejected": 1, "tokens_left": 0} == (agents["capped"])
    )
    assert agents["free"]["completed"] == 10
    assert agents["free"]["prompt_tokens"] == 60
    assert agents["free"]["tokens_left"] is None


async def test_request_budget_under_concurrency() -> None:
    backend = Backend(latency=0.002)
    scheduler = scheduler_with(backend, max_in_flight=2)
    capped = scheduler.model_for("capped", request_budget=3)
    other = scheduler.model_for("other")
    results = await asyncio.gather(
        *(capped.arequest(ask()) for _ in range(10)),
        *(other.arequest(ask()) for _ in range(10)),
        return_exceptions=True,
    )
    refused = [r for r in results[:10] if isinstance(r, BudgetExceeded)]
    assert len(refused) == 7
    assert {(e.agent, e.resource, e.limit) for e in refused} == {("capped", "requests", 3)}
    assert all(isinstance(r, ModelResponse) for r in results[10:])
    assert scheduler.state()["agents"]["capped"]["requests_left"] == 0


async def test_token_budget_used_up_while_waiting_refuses_at_dispatch() -> None:
    backend = Backend()
    scheduler = Scheduler({"main": FunctionModel(costly)}, max_in_flight=1)
    capped = scheduler.model_for("capped", token_budget=10)
    first = asyncio.create_task(capped.arequest(ask()))
    second = asyncio.create_task(capped.arequest(ask()))  # admitted: 0 tokens used so far
    assert (await first).usage.total_tokens == 10
    with pytest.raises(BudgetExceeded, match="tokens budget"):
        await second
    assert scheduler.state()["agents"]["capped"]["completed"] == 1
    del backend


# -- cancellation and deadlines -------------------------------------------------------------


async def test_cancelling_a_waiting_call_removes_it() -> None:
    backend = Backend()
    scheduler = scheduler_with(backend, max_in_flight=1)
    blocker = await hold_the_slot(backend, scheduler)
    waiting = asyncio.create_task(scheduler.model_for("a").arequest(ask("never")))
    await until(lambda: scheduler.state()["agents"].get("a", {}).get("waiting") == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert backend.gate is not None
    backend.gate.set()
    await blocker
    await scheduler.model_for("a").arequest(ask("after"))
    assert "never" not in backend.served
    agent = scheduler.state()["agents"]["a"]
    assert agent | {"cancelled": 1, "requests": 1, "waiting": 0, "completed": 1} == agent


async def test_cancelling_a_running_call_frees_its_slot() -> None:
    backend = Backend(slow=30.0)
    scheduler = scheduler_with(backend, max_in_flight=1)
    model = scheduler.model_for("a")
    running = asyncio.create_task(model.arequest(ask("slow")))
    await until(lambda: backend.running == 1)
    queued = asyncio.create_task(model.arequest(ask("next")))
    await asyncio.sleep(0.01)
    assert not queued.done()
    running.cancel()
    started = time.monotonic()
    assert (await queued).text == "re:next"
    assert time.monotonic() - started < 1.0
    assert running.cancelled()
    assert (
        scheduler.state()["backends"]["main"] | {"running": 0, "cancelled": 1}
        == (scheduler.state()["backends"]["main"])
    )


async def test_deadline_passes_while_waiting() -> None:
    backend = Backend(slow=0.3)
    scheduler = scheduler_with(backend, max_in_flight=1)
    model = scheduler.model_for("a")
    slow = asyncio.create_task(model.arequest(ask("slow")))
    await until(lambda: backend.running == 1)
    started = time.monotonic()
    with pytest.raises(ModelTimeoutError, match="waiting for a slot"):
        await model.arequest(ask("late", timeout=0.05))
    assert time.monotonic() - started < 0.25
    assert (await slow).text == "re:slow"  # the running call is unaffected
    assert "late" not in backend.served
    agent = scheduler.state()["agents"]["a"]
    assert agent | {"timed_out": 1, "completed": 1, "waiting": 0, "running": 0} == agent


async def test_default_deadline_covers_the_running_call() -> None:
    backend = Backend(slow=30.0)
    scheduler = scheduler_with(backend, max_in_flight=1, default_timeout=0.05)
    model = scheduler.model_for("a")
    with pytest.raises(ModelTimeoutError, match="while running"):
        await model.arequest(ask("slow"))
    assert (await model.arequest(ask("ok"))).text == "re:ok"  # the slot came back
    assert scheduler.state()["backends"]["main"]["timed_out"] == 1


async def test_outside_cancellation_is_not_reported_as_a_timeout() -> None:
    backend = Backend(slow=30.0)
    scheduler = scheduler_with(backend)
    call = asyncio.create_task(scheduler.model_for("a").arequest(ask("slow", timeout=5)))
    await until(lambda: backend.running == 1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The caller's own timeout is the caller's: it is not turned into ModelTimeoutError.
    with pytest.raises(TimeoutError) as caught:
        async with asyncio.timeout(0.05):
            await scheduler.model_for("a").arequest(ask("slow", timeout=5))
    assert not isinstance(caught.value, ModelTimeoutError)
    assert (
        scheduler.state()["backends"]["main"] | {"cancelled": 2, "timed_out": 0}
        == (scheduler.state()["backends"]["main"])
    )


# -- failures -------------------------------------------------------------------------------


async def test_a_failing_request_fails_only_its_call() -> None:
    backend = Backend(latency=0.002)
    scheduler = scheduler_with(backend, max_in_flight=3)
    good, bad = scheduler.model_for("good"), scheduler.model_for("bad")
    results = await asyncio.gather(
        *(good.arequest(ask("fine")) for _ in range(20)),
        *(bad.arequest(ask("boom")) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, ModelResponse) for r in results[:20])
    assert all(isinstance(r, ModelError) for r in results[20:])
    assert (await bad.arequest(ask("fine"))).text == "re:fine"  # still served
    state = scheduler.state()
    assert (
        state["backends"]["main"] | {"failed": 5, "completed": 21, "running": 0}
        == (state["backends"]["main"])
    )
    assert state["agents"]["bad"]["failed"] == 5


# -- batching -------------------------------------------------------------------------------


class BatchingModel(Model):
    """Replies ``re:<text>``; records the size of every ``abatch`` call."""

    model_id = "test:batching"
    supports_batching = True

    def __init__(self, latency: float = 0.005) -> None:
        self.latency = latency
        self.batch_sizes: list[int] = []
        self.single_calls = 0

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        self.single_calls += 1
        if text_of(request) == "boom":
            raise ModelError("bad request", model=self.model_id)
        await asyncio.sleep(self.latency)
        return ModelResponse(text=f"re:{text_of(request)}", usage=Usage(prompt_tokens=1))

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        self.batch_sizes.append(len(requests))
        if any(text_of(r) == "boom" for r in requests):
            raise ModelError("one request spoiled the batch", model=self.model_id)
        await asyncio.sleep(self.latency)
        return [
            ModelResponse(text=f"re:{text_of(r)}", usage=Usage(prompt_tokens=1)) for r in requests
        ]


async def test_batching_groups_waiting_requests() -> None:
    model = BatchingModel()
    scheduler = Scheduler({"b": model}, max_in_flight=1, batch_size=8)
    handles = [scheduler.model_for(f"agent-{i}") for i in range(20)]
    replies = await asyncio.gather(*(h.arequest(ask(str(i))) for i, h in enumerate(handles)))
    assert [r.text for r in replies] == [f"re:{i}" for i in range(20)]
    assert sum(model.batch_sizes) == 20
    assert max(model.batch_sizes) == 8
    assert len(model.batch_sizes) <= 4
    state = scheduler.state()
    assert state["backends"]["b"]["batches"] == len(model.batch_sizes)
    assert state["backends"]["b"]["completed"] == 20
    assert state["agents"]["agent-3"]["prompt_tokens"] == 1


async def test_batch_window_collects_late_arrivals() -> None:
    model = BatchingModel()
    scheduler = Scheduler({"b": model}, max_in_flight=4, batch_size=8, batch_window=0.05)
    handle = scheduler.model_for("a")

    async def later(delay: float) -> ModelResponse:
        await asyncio.sleep(delay)
        return await handle.arequest(ask())

    await asyncio.gather(*(later(0.002 * i) for i in range(5)))
    assert model.batch_sizes == [5]  # free slots did not split them: they joined the batch


async def test_a_bad_request_in_a_batch_fails_alone() -> None:
    model = BatchingModel()
    scheduler = Scheduler({"b": model}, max_in_flight=1, batch_size=8)
    handle = scheduler.model_for("a")
    texts = ["x", "boom", "y", "z"]
    results = await asyncio.gather(
        *(handle.arequest(ask(t)) for t in texts), return_exceptions=True
    )
    assert model.batch_sizes == [4]  # then one by one
    assert [getattr(r, "text", None) for r in results] == ["re:x", None, "re:y", "re:z"]
    assert isinstance(results[1], ModelError)
    assert (
        scheduler.state()["backends"]["b"] | {"failed": 1, "completed": 3}
        == (scheduler.state()["backends"]["b"])
    )


async def test_a_batch_member_can_time_out_or_be_cancelled_alone() -> None:
    model = BatchingModel(latency=0.2)
    scheduler = Scheduler({"b": model}, max_in_flight=1, batch_size=8)
    handle = scheduler.model_for("a")
    patient = [asyncio.create_task(handle.arequest(ask(str(i)))) for i in range(3)]
    hasty = asyncio.create_task(handle.arequest(ask("hasty", timeout=0.05)))
    gone = asyncio.create_task(handle.arequest(ask("gone")))
    await asyncio.sleep(0.02)
    gone.cancel()
    with pytest.raises(ModelTimeoutError):
        await hasty
    assert [r.text for r in await asyncio.gather(*patient)] == ["re:0", "re:1", "re:2"]
    assert gone.cancelled()
    assert model.batch_sizes == [5]
    agent = scheduler.state()["agents"]["a"]
    assert agent | {"completed": 3, "timed_out": 1, "cancelled": 1, "running": 0} == agent


async def test_batch_of_cancelled_members_frees_its_slot() -> None:
    model = BatchingModel(latency=30.0)
    scheduler = Scheduler({"b": model}, max_in_flight=1)
    handle = scheduler.model_for("a")
    calls = [asyncio.create_task(handle.arequest(ask())) for _ in range(3)]
    await until(lambda: model.batch_sizes == [3])
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    await until(lambda: scheduler.state()["backends"]["b"]["running"] == 0)
    model.latency = 0.0
    assert (await handle.arequest(ask("again"))).text == "re:again"


def test_batches_gather_calls_from_several_threads() -> None:
    model = BatchingModel(latency=0.01)
    scheduler = Scheduler({"b": model}, max_in_flight=1, batch_size=8, batch_window=0.01)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        handle = scheduler.model_for(f"thread-{index}")
        try:
            for k in range(5):
                assert handle.request(ask(f"{index}.{k}")).text == f"re:{index}.{k}"
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # A call that finds no company runs alone, through arequest.
    assert sum(model.batch_sizes) + model.single_calls == 20
    assert max(model.batch_sizes) > 1  # members from different threads' loops


def test_a_batch_outlives_the_loop_that_started_it() -> None:
    # Thread A's call opens a batch (its task runs in A's loop); B's call joins it. A
    # times out and its asyncio.run ends, cancelling the batch: B goes back in line.
    model = BatchingModel(latency=0.4)
    scheduler = Scheduler({"b": model}, max_in_flight=1, batch_window=0.15)
    outcome: dict[str, object] = {}

    def call(name: str, delay: float, timeout: float) -> None:
        time.sleep(delay)
        try:
            outcome[name] = scheduler.model_for(name).request(ask(name, timeout=timeout))
        except BaseException as err:
            outcome[name] = err

    threads = [
        threading.Thread(target=call, args=("A", 0.0, 0.25)),
        threading.Thread(target=call, args=("B", 0.01, 5.0)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert isinstance(outcome["A"], ModelTimeoutError)
    assert isinstance(outcome["B"], ModelResponse)
    assert outcome["B"].text == "re:B"
    assert (model.batch_sizes, model.single_calls) == ([2], 1)  # B ran again, alone
    assert (
        scheduler.state()["backends"]["b"] | {"running": 0, "waiting": 0}
        == (scheduler.state()["backends"]["b"])
    )


# -- streaming ------------------------------------------------------------------------------


class StreamingModel(Model):
    model_id = "test:stream"

    def __init__(self) -> None:
        self.running = 0
        self.max_running = 0

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(0.001)
            return ModelResponse(text="whole")
        finally:
            self.running -= 1

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            for word in ("one ", "two ", "three"):
                await asyncio.sleep(0.005)
                yield StreamEvent(text=word)
            yield StreamEvent(
                finish_reason="stop", usage=Usage(prompt_tokens=2, completion_tokens=3)
            )
        finally:
            self.running -= 1


async def test_a_stream_holds_its_slot_until_it_ends() -> None:
    model = StreamingModel()
    scheduler = Scheduler({"s": model}, max_in_flight=1)
    handle = scheduler.model_for("a")
    stream = handle.astream(ask())
    first = await anext(stream)
    assert first.text == "one "
    other = asyncio.create_task(scheduler.model_for("b").arequest(ask()))
    await asyncio.sleep(0.02)
    state = scheduler.state()
    assert (state["backends"]["s"]["running"], state["backends"]["s"]["waiting"]) == (1, 1)
    assert not other.done()
    rest = [event async for event in stream]
    assert "".join(e.text for e in [first, *rest]) == "one two three"
    assert (await other).text == "whole"
    assert model.max_running == 1
    agent = scheduler.state()["agents"]["a"]
    assert (agent["completed"], agent["prompt_tokens"], agent["completion_tokens"]) == (1, 2, 3)


async def test_an_abandoned_stream_frees_its_slot() -> None:
    model = StreamingModel()
    scheduler = Scheduler({"s": model}, max_in_flight=1)
    handle = scheduler.model_for("a")
    async with contextlib.aclosing(handle.astream(ask())) as stream:
        async for _event in stream:
            break
    assert scheduler.state()["backends"]["s"]["running"] == 0
    assert model.running == 0
    assert (await handle.arequest(ask())).text == "whole"


async def test_a_stream_deadline() -> None:
    model = StreamingModel()
    scheduler = Scheduler({"s": model})
    with pytest.raises(ModelTimeoutError, match="while running"):
        async for _event in scheduler.model_for("a").astream(ask(timeout=0.008)):
            pass
    assert (
        scheduler.state()["backends"]["s"] | {"running": 0, "timed_out": 1}
        == (scheduler.state()["backends"]["s"])
    )


# -- the sync face and several loops --------------------------------------------------------


def test_sync_calls_each_on_their_own_loop() -> None:
    backend = Backend(latency=0.001)
    scheduler = scheduler_with(backend, max_in_flight=2)
    model = scheduler.model_for("sync")
    assert model.request(ask("one")).text == "re:one"
    assert model.chat("two").text == "re:two"
    assert "".join(e.text for e in model.stream(ask("three"))) == "re:three"
    assert scheduler.state()["agents"]["sync"]["completed"] == 3


def test_threads_with_their_own_loops_share_the_limit() -> None:
    # Calls long enough that six threads overlap even on a starved machine (3 ms calls
    # ran one at a time there, and the limit was never reached).
    backend = Backend(latency=0.03)
    scheduler = scheduler_with(backend, max_in_flight=2)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        model = scheduler.model_for(f"thread-{index}")
        try:
            for k in range(5):
                assert model.request(ask(f"{index}.{k}")).text == f"re:{index}.{k}"
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert backend.max_running == 2
    assert scheduler.state()["backends"]["main"]["completed"] == 30


async def test_sync_and_async_callers_share_the_scheduler() -> None:
    backend = Backend(latency=0.001)
    scheduler = scheduler_with(backend, max_in_flight=1)
    model = scheduler.model_for("a")
    concurrent = asyncio.create_task(model.arequest(ask("async")))
    # The sync call runs asyncio.run on a worker thread: a second loop, same scheduler.
    reply = await asyncio.to_thread(model.request, ask("sync"))
    assert reply.text == "re:sync"
    assert (await concurrent).text == "re:async"


# -- state, handles, configuration, closing -------------------------------------------------


async def test_state_is_a_json_snapshot() -> None:
    backend = Backend(latency=0.001)
    scheduler = scheduler_with(backend, max_in_flight=3)
    model = scheduler.model_for("a", token_budget=1_000, request_budget=10)
    await asyncio.gather(*(model.arequest(ask("hello world")) for _ in range(4)))
    state = json.loads(json.dumps(scheduler.state()))
    assert state["policy"] == "fair"
    assert state["closed"] is False
    assert state["backends"]["main"] == {
        "model": "test:function", "running": 0, "waiting": 0, "max_in_flight": 3,
        "completed": 4, "failed": 0, "timed_out": 0, "cancelled": 0, "batching": False,
        "batches": 0, "cache_hits": None, "cache_misses": None,  # no cache on this backend
    }  # fmt: skip
    agent = state["agents"]["a"]
    used = agent["prompt_tokens"] + agent["completion_tokens"]
    assert used > 0
    assert agent["tokens_left"] == 1_000 - used
    assert agent["requests_left"] == 6
    assert 0 <= agent["wait_p50_s"] <= agent["wait_p99_s"]
    assert agent["wait_mean_s"] >= 0


async def test_state_counts_a_cached_backends_hits_and_misses() -> None:
    from llmagentos.llm.cache import CachedModel

    cached = CachedModel(FunctionModel(Backend(), model_id="test:inner"))
    scheduler = Scheduler({"main": cached})
    model = scheduler.model_for("a")
    question = ModelRequest(
        messages=(Message.user("the same question"),), settings=ModelSettings(temperature=0)
    )
    for _ in range(3):
        await model.arequest(question)
    state = scheduler.state()["backends"]["main"]
    assert (state["cache_hits"], state["cache_misses"]) == (2, 1)


async def test_a_handle_is_a_model() -> None:
    backend = Backend()
    inner = FunctionModel(backend, model_id="test:inner")
    scheduler = Scheduler({"main": inner})
    model = scheduler.model_for("a")
    assert isinstance(model, ScheduledModel)
    assert model.model_id == "test:inner"
    assert list(model.layers()) == [model, inner]
    assert (await model.achat("hello", system="be brief")).text == "re:hello"
    replies = await model.abatch([ask("x"), ask("y")])
    assert [r.text for r in replies] == ["re:x", "re:y"]
    await model.aclose()  # does not close the shared backend
    assert "agent='a'" in repr(model)


async def test_unknown_backend_lists_the_backends() -> None:
    scheduler = scheduler_with(Backend())
    scheduler.add_backend("other", FunctionModel(Backend()))
    with pytest.raises(UnknownBackendError, match=r"'nope'.*'main', 'other'") as caught:
        scheduler.model_for("a", "nope")
    assert isinstance(caught.value, UnknownModelError)
    assert isinstance(caught.value, LookupError)
    assert caught.value.available == ["main", "other"]
    with pytest.raises(UnknownBackendError, match="add_backend"):
        Scheduler().model_for("a")


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="policy"):
        Scheduler(policy="lifo")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_in_flight"):
        Scheduler({"m": FunctionModel(Backend())}, max_in_flight=0)
    scheduler = scheduler_with(Backend())
    with pytest.raises(ConfigError, match="already"):
        scheduler.add_backend("main", FunctionModel(Backend()))
    with pytest.raises(ConfigError, match="weight"):
        scheduler.model_for("a", weight=0)


class ClosableModel(FunctionModel):
    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_close_fails_waiting_calls_and_refuses_new_ones() -> None:
    backend = Backend()
    inner = ClosableModel(backend)
    scheduler = Scheduler({"main": inner}, max_in_flight=1)
    blocker = await hold_the_slot(backend, scheduler)
    waiting = asyncio.create_task(scheduler.model_for("a").arequest(ask()))
    await until(lambda: scheduler.state()["backends"]["main"]["waiting"] == 1)
    await scheduler.aclose()
    with pytest.raises(ModelError, match="closed"):
        await waiting
    with pytest.raises(ModelError, match="closed"):
        await scheduler.model_for("a").arequest(ask())
    assert inner.closed
    assert scheduler.state()["closed"] is True
    assert backend.gate is not None
    backend.gate.set()
    await blocker  # a running call ends as its model does
