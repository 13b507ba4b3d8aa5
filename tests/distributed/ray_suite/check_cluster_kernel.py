"""The kernel across the cluster: every worker's agents under one scheduler, the
embedded model loaded once per node, batching where the backend batches."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import cloudpickle
import pytest
import ray.cloudpickle

from llmagentos.build import build_agent
from llmagentos.config import RunConfig
from llmagentos.distributed.cluster_kernel import (
    ClusterKernel,
    ClusterModel,
    start_cluster_kernel,
    stop_cluster_kernel,
)
from llmagentos.distributed.node_models import NAMESPACE, host_name
from llmagentos.exceptions import BudgetExceeded, ConfigError, ModelTimeoutError, UnknownModelError
from llmagentos.kernel.default import route_models
from llmagentos.llm.base import Model, to_messages
from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import ModelRequest, ModelResponse, ModelSettings, Usage
from llmagentos.registration import registry

# The workers cannot import this file: send its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the agent's payload
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's own arguments

ORDER = ("south", "east", "north", "west")


def maze_answer(request: ModelRequest) -> str:
    """A deterministic planner: the first allowed move in a fixed order, by prompt length."""
    allowed = request.output_schema["properties"]["action"]["enum"]  # type: ignore[index]
    text = " ".join(m.content or "" for m in request.messages)
    action = allowed[len(text) % len(allowed)]
    return json.dumps({"reason": f"{action} by the rule", "action": action})


def maze_model() -> Model:
    return FunctionModel(maze_answer, model_id="fake:maze")


async def slow_answer(request: ModelRequest) -> str:
    """Sleeps as long as the prompt's first word says."""
    await asyncio.sleep(float((request.messages[0].content or "0").split()[0]))
    return "ok"


def slow_model() -> Model:
    return FunctionModel(slow_answer, model_id="fake:slow")


class BatchingModel(Model):
    """Records the size of every batch it is given."""

    model_id = "fake:batching"
    supports_batching = True

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        return (await self.abatch([request]))[0]

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        self.sizes.append(len(requests))
        await asyncio.sleep(0.05)
        return [ModelResponse(text="b", usage=Usage(prompt_tokens=1, completion_tokens=1))
                for _ in requests]  # fmt: skip


def maze_config(model: str = "fake:maze", planner: str = "llm") -> RunConfig:
    return RunConfig.model_validate(
        {
            "name": "maze_on_cluster",
            "env": {"id": "TextMaze-v0", "kwargs": {"max_steps": 12}},
            "agent": {
                "planning": {"type": planner, "model": model},
                "learning": {"type": "q_learning"},
            },
        }
    )


@pytest.fixture(scope="module")
def kernel(ray_cluster: Any) -> Iterator[ClusterKernel]:
    registry.register("model", "fake", lambda rest, **_: maze_model(), overwrite=True)
    started = start_cluster_kernel(batch_window=0.05)
    started.add_backend("fake:maze", maze_model, max_in_flight=2)
    started.add_backend("fake:slow", slow_model, max_in_flight=1)
    started.add_backend("fake:batching", BatchingModel, max_in_flight=1)
    yield started
    assert stop_cluster_kernel()


def request(text: str, *, sleep: float = 0.03, timeout: float | None = None) -> ModelRequest:
    return ModelRequest(
        messages=to_messages(f"{sleep} {text}"), settings=ModelSettings(timeout=timeout)
    )


def test_an_llm_agent_on_workers_gets_the_in_process_returns(kernel: ClusterKernel) -> None:
    route_models(None)  # the reference: this process's own kernel, the same model
    try:
        serial = build_agent(maze_config()).agent.run(6, seed=0, train=False, reseed="each")
    finally:
        route_models(ClusterModel)
    agent = build_agent(maze_config()).agent
    remote = agent.run(6, seed=0, train=False, backend="ray", workers=2)
    assert [e.total_reward for e in remote.episodes] == [e.total_reward for e in serial.episodes]
    assert [e.length for e in remote.episodes] == [e.length for e in serial.episodes]
    state = kernel.state()
    calls = sum(e.length for e in remote.episodes)
    assert state["agents"]["maze_on_cluster"]["completed"] >= calls  # every step's call went there
    hosts = state["backends"]["fake:maze"]["hosts"]
    assert len(hosts) == 1 and hosts[0]["calls"] >= calls  # one node: one host


def test_one_scheduler_is_fair_across_processes(kernel: ClusterKernel, ray_cluster: Any) -> None:
    @ray_cluster.remote(num_cpus=0.5)
    def calls(agent: str, count: int, delay: float) -> list[float]:
        async def run() -> list[float]:
            await asyncio.sleep(delay)
            model = ClusterModel("fake:slow", agent=agent)
            done: list[float] = []

            async def one(i: int) -> None:
                await model.arequest(request(f"{agent} {i}"))
                done.append(time.time())

            await asyncio.gather(*(one(i) for i in range(count)))
            return done

        return asyncio.run(run())

    hog, meek = ray_cluster.get([calls.remote("hog", 30, 0.0), calls.remote("meek", 3, 0.3)])
    # One call at a time, 30 ms each: the hog's queue takes ~0.9 s. Fair queueing serves
    # the late newcomer within about a round, not after the hog's whole queue.
    assert sum(t < max(meek) for t in hog) < 22, (sorted(hog), meek)
    assert max(meek) < max(hog)


def test_a_budget_holds_across_workers(kernel: ClusterKernel, ray_cluster: Any) -> None:
    @ray_cluster.remote(num_cpus=0.5)
    def spend(worker: int) -> tuple[int, str]:
        model = ClusterModel("fake:slow", agent="thrifty", token_budget=12)
        made = 0
        for i in range(20):
            try:
                model.request(request(f"call {worker} {i} " + "x" * 12, sleep=0.0))
            except BudgetExceeded as err:
                return made, f"{err.agent}:{err.resource}"
            made += 1
        return made, "never refused"

    results = ray_cluster.get([spend.remote(0), spend.remote(1)])
    assert all(reason == "thrifty:tokens" for _, reason in results), results
    usage = kernel.state()["agents"]["thrifty"]
    assert usage["token_budget"] == 12
    # Each call uses ~7 tokens: the budget admits a couple, whichever worker asks.
    assert sum(made for made, _ in results) <= 4


def test_a_deadline_is_the_kernel_s(kernel: ClusterKernel, ray_cluster: Any) -> None:
    @ray_cluster.remote(num_cpus=0.5)
    def late() -> str:
        model = ClusterModel("fake:slow", agent="hurried")
        try:
            model.request(request("slow one", sleep=2.0, timeout=0.3))
        except ModelTimeoutError as err:
            return str(err)
        return "no timeout"

    assert "0.3 s deadline" in ray_cluster.get(late.remote())


def test_calls_from_several_workers_are_batched(kernel: ClusterKernel, ray_cluster: Any) -> None:
    @ray_cluster.remote(num_cpus=0.5)
    def burst(worker: int) -> int:
        async def run() -> int:
            model = ClusterModel("fake:batching", agent=f"batcher-{worker}")
            replies = await asyncio.gather(
                *(model.arequest(request(f"{worker}-{i}")) for i in range(6))
            )
            return len(replies)

        return asyncio.run(run())

    assert ray_cluster.get([burst.remote(0), burst.remote(1)]) == [6, 6]
    host = ray_cluster.get_actor(
        host_name("fake:batching", ray_cluster.get_runtime_context().get_node_id()),
        namespace=NAMESPACE,
    )
    sizes = ray_cluster.get(host.__ray_call__.remote(lambda self: self.model.sizes))
    assert sum(sizes) == 12 and max(sizes) > 1, sizes


def test_bad_backends_are_typed_errors(kernel: ClusterKernel, ray_cluster: Any) -> None:
    with pytest.raises(ConfigError, match="already added"):
        kernel.add_backend("fake:maze", maze_model)
    with pytest.raises(ConfigError) as caught:
        kernel.add_backend("fake:other", maze_model, max_in_flight=0)
    assert caught.value.field == "max_in_flight"
    model = ClusterModel("nosuch:model", agent="a")
    with pytest.raises(UnknownModelError):
        model.request(request("hello"))


def test_the_embedded_model_is_loaded_once_per_node(kernel: ClusterKernel) -> None:
    config = maze_config("local:smollm2", planner="llm")
    route_models(None)
    try:
        serial = build_agent(config).agent.run(2, seed=0, max_steps=4, train=False, reseed="each")
    finally:
        route_models(ClusterModel)
    agent = build_agent(config).agent
    remote = agent.run(2, seed=0, max_steps=4, train=False, backend="ray", workers=2)
    assert [e.total_reward for e in remote.episodes] == [e.total_reward for e in serial.episodes]
    hosts = kernel.state()["backends"]["local:smollm2"]["hosts"]
    assert len(hosts) == 1, hosts  # two workers, one node: one loaded model
    assert hosts[0]["calls"] >= 1


def test_a_killed_model_host_is_replaced(kernel: ClusterKernel, ray_cluster: Any) -> None:
    node = ray_cluster.get_runtime_context().get_node_id()
    model = ClusterModel("fake:slow", agent="survivor")
    assert model.request(request("before")).text == "ok"
    ray_cluster.kill(ray_cluster.get_actor(host_name("fake:slow", node), namespace=NAMESPACE))
    assert model.request(request("after")).text == "ok"  # on a new host, same node
    backend = kernel.state()["backends"]["fake:slow"]
    assert backend["hosts_lost"] == 1 and len(backend["hosts"]) == 1
