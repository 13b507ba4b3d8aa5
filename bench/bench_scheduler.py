"""The kernel's LLM scheduler: makespan against the ideal, and fair queueing against FIFO.

Throughput: N agents each make k calls in a row through one ``Scheduler`` backend of
capacity C (``max_in_flight``) whose mock model answers after L seconds. No schedule
can beat ``ceil(N*k / C) * L``; the check is the makespan over that ideal. A bare
``asyncio.Semaphore(C)`` around the same mock, in the same run, shows what the event
loop and its timers cost on this machine without any scheduler (no target).

Fairness: one greedy agent queues G calls at once, then M light agents arrive one by
one, each with one call, over the first half of the greedy agent's backlog. A light
call's wait (submitted -> the backend starts it) is measured outside the scheduler;
the check compares the light agents' p99 wait under ``fair`` with that under ``fifo``.

The mock model sleeps and returns a prebuilt response, so the numbers are the
scheduler's and the event loop's, not a test double's.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Sequence
from typing import Any

from _common import BenchResult, Case, Check, clock, interleave, ratio_text
from llmagentos.kernel import Scheduler
from llmagentos.kernel.queues import Policy
from llmagentos.llm import Message, Model, ModelRequest, ModelResponse, Usage

NAME = "scheduler"
MAKESPAN_TARGET = 1.10
FAIRNESS_TARGET = 0.2
REPLY = ModelResponse(text="ok", usage=Usage(prompt_tokens=8, completion_tokens=2))


class MockBackend(Model):
    """Answers every request after ``latency`` seconds; notes when each one started."""

    model_id = "bench:mock"

    def __init__(self, latency: float, started: dict[str, float]) -> None:
        self.latency = latency
        self.started = started

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        self.started[request.messages[0].content or ""] = clock()
        await asyncio.sleep(self.latency)
        return REPLY


def requests_for(agent: int, calls: int) -> list[ModelRequest]:
    return [ModelRequest(messages=(Message.user(f"{agent}/{k}"),)) for k in range(calls)]


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- throughput -----------------------------------------------------------------------------


Waits = list[dict[str, float]]
"""Per run: call id (``agent/k``) -> seconds from submitted to started by the backend."""


def throughput_case(
    kind: str, agents: int, calls: int, *, capacity: int, latency: float, waits: Waits
) -> Case:
    """One run of ``agents`` x ``calls``; appends every call's wait to ``waits``."""

    async def workload() -> int:
        started: dict[str, float] = {}
        submitted: dict[str, float] = {}
        mock = MockBackend(latency, started)
        plans = [requests_for(a, calls) for a in range(agents)]
        if kind == "scheduler":
            scheduler = Scheduler({"mock": mock}, max_in_flight=capacity)
            handles = [scheduler.model_for(f"agent-{a}") for a in range(agents)]

            async def agent(a: int) -> None:
                model = handles[a]
                for request in plans[a]:
                    submitted[request.messages[0].content or ""] = clock()
                    await model.arequest(request)

        else:
            slots = asyncio.Semaphore(capacity)

            async def agent(a: int) -> None:
                for request in plans[a]:
                    submitted[request.messages[0].content or ""] = clock()
                    async with slots:
                        await mock.arequest(request)

        start = clock()
        await asyncio.gather(*(agent(a) for a in range(agents)))
        elapsed = clock() - start
        waits.append({key: (started[key] - submitted[key]) / 1e9 for key in submitted})
        return elapsed

    def run() -> tuple[int, int]:
        return asyncio.run(workload()), 1

    return run


# -- fairness -------------------------------------------------------------------------------


def fairness_case(
    policy: Policy, greedy: int, light: int, *, capacity: int, latency: float, waits: Waits
) -> Case:
    """Greedy backlog, then light arrivals; appends the light calls' waits to ``waits``."""
    backlog_seconds = math.ceil(greedy / capacity) * latency
    spacing = backlog_seconds / 2 / light

    async def workload() -> int:
        started: dict[str, float] = {}
        submitted: dict[str, float] = {}
        scheduler = Scheduler(
            {"mock": MockBackend(latency, started)}, max_in_flight=capacity, policy=policy
        )
        flood = requests_for(-1, greedy)
        greedy_model = scheduler.model_for("greedy")
        light_models = [scheduler.model_for(f"light-{i}") for i in range(light)]
        light_requests = [requests_for(i, 1)[0] for i in range(light)]

        async def light_agent(i: int) -> None:
            await asyncio.sleep(i * spacing)
            submitted[f"{i}/0"] = clock()
            await light_models[i].arequest(light_requests[i])

        start = clock()
        await asyncio.gather(
            *(greedy_model.arequest(r) for r in flood), *(light_agent(i) for i in range(light))
        )
        elapsed = clock() - start
        waits.append({key: (started[key] - submitted[key]) / 1e9 for key in submitted})
        return elapsed

    def run() -> tuple[int, int]:
        return asyncio.run(workload()), 1

    return run


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def run(quick: bool) -> BenchResult:
    if quick:
        agents, calls, capacity, latency, repeats = 200, 3, 20, 0.02, 3
        greedy, light, fair_capacity, fair_latency, fair_repeats = 400, 50, 20, 0.01, 3
    else:
        agents, calls, capacity, latency, repeats = 1_000, 3, 50, 0.02, 5
        greedy, light, fair_capacity, fair_latency, fair_repeats = 2_000, 200, 50, 0.02, 3
    ideal = math.ceil(agents * calls / capacity) * latency

    waits: dict[str, Waits] = {"scheduler": [], "semaphore": []}
    stats = interleave(
        {
            kind: throughput_case(
                kind, agents, calls, capacity=capacity, latency=latency, waits=waits[kind]
            )
            for kind in waits
        },
        repeats=repeats,
        warmups=1,
    )
    makespan = {kind: item.median / 1e9 for kind, item in stats.items()}
    vs_ideal = {
        kind: statistics.median(ns / 1e9 / ideal for ns in item.per_unit_ns)
        for kind, item in stats.items()
    }
    # runs[0] is the warm-up's.
    timed_waits = {kind: [w for r in runs[1:] for w in r.values()] for kind, runs in waits.items()}
    agent_waits = {kind: _agent_mean_waits(runs[1:]) for kind, runs in waits.items()}

    light_waits: dict[Policy, Waits] = {"fair": [], "fifo": []}
    fair_stats = interleave(
        {
            policy: fairness_case(
                policy,
                greedy,
                light,
                capacity=fair_capacity,
                latency=fair_latency,
                waits=light_waits[policy],
            )
            for policy in light_waits
        },
        repeats=fair_repeats,
        warmups=1,
    )
    # Per repeat: the light agents' p99 wait; the ratio is the median over repeats of
    # fair / fifo in the same repeat (runs[0] is the warm-up).
    p99 = {
        p: [quantile(list(r.values()), 0.99) for r in runs[1:]] for p, runs in light_waits.items()
    }
    p50 = {
        p: [quantile(list(r.values()), 0.50) for r in runs[1:]] for p, runs in light_waits.items()
    }
    fairness_ratio = statistics.median(f / o for f, o in zip(p99["fair"], p99["fifo"], strict=True))

    n_calls = agents * calls
    rows = [
        [
            f"Scheduler (fair), {agents:,} agents x {calls}",
            f"{n_calls:,}",
            f"{makespan['scheduler']:.3f}",
            f"{ideal:.3f}",
            ratio_text(vs_ideal["scheduler"]),
            _ms(quantile(timed_waits["scheduler"], 0.5)),
            _ms(quantile(timed_waits["scheduler"], 0.99)),
        ],
        [
            "asyncio.Semaphore, same mock (no scheduler)",
            f"{n_calls:,}",
            f"{makespan['semaphore']:.3f}",
            f"{ideal:.3f}",
            ratio_text(vs_ideal["semaphore"]),
            _ms(quantile(timed_waits["semaphore"], 0.5)),
            _ms(quantile(timed_waits["semaphore"], 0.99)),
        ],
    ]
    fair_ideal = math.ceil((greedy + light) / fair_capacity) * fair_latency
    for policy in light_waits:
        rows.append(
            [
                f"{policy}: {light} light agents + greedy {greedy:,}",
                f"{greedy + light:,}",
                f"{fair_stats[policy].median / 1e9:.3f}",
                f"{fair_ideal:.3f}",
                ratio_text(fair_stats[policy].median / 1e9 / fair_ideal),
                _ms(statistics.median(p50[policy])),
                _ms(statistics.median(p99[policy])),
            ]
        )
    checks = [
        Check(
            name="scheduler_makespan",
            measured=f"makespan {makespan['scheduler']:.3f} s",
            baseline=f"ideal ceil(N*k/C)*L = {ideal:.3f} s",
            ratio=vs_ideal["scheduler"],
            target=MAKESPAN_TARGET,
            direction="<=",
        ),
        Check(
            name="scheduler_fairness",
            measured=f"fair: light p99 wait {_ms(statistics.median(p99['fair']))} ms",
            baseline=f"fifo: {_ms(statistics.median(p99['fifo']))} ms",
            ratio=fairness_ratio,
            target=FAIRNESS_TARGET,
            direction="<=",
        ),
    ]
    data: dict[str, Any] = {
        kind: {
            "makespan_s": makespan[kind],
            "ratio_vs_ideal": vs_ideal[kind],
            "wait_p50_s": quantile(timed_waits[kind], 0.5),
            "wait_p99_s": quantile(timed_waits[kind], 0.99),
            "agent_mean_wait_p50_s": quantile(agent_waits[kind], 0.5),
            "agent_mean_wait_p99_s": quantile(agent_waits[kind], 0.99),
            **stats[kind].to_dict(),
        }
        for kind in waits
    } | {
        f"fairness_{policy}": {
            "light_wait_p50_s_per_repeat": p50[policy],
            "light_wait_p99_s_per_repeat": p99[policy],
            **fair_stats[policy].to_dict(),
        }
        for policy in light_waits
    }
    return BenchResult(
        name=NAME,
        title=(
            f"scheduler: mock backend L={latency * 1e3:g} ms, C={capacity}; "
            f"{repeats} repeats (fairness: {fair_repeats})"
        ),
        columns=[
            "case",
            "calls",
            "makespan s (median)",
            "ideal s",
            "ratio vs ideal",
            "wait p50 ms",
            "wait p99 ms",
        ],
        rows=rows,
        checks=checks,
        params={
            "agents": agents,
            "calls_per_agent": calls,
            "capacity": capacity,
            "latency_s": latency,
            "repeats": repeats,
            "greedy_calls": greedy,
            "light_agents": light,
            "fairness_capacity": fair_capacity,
            "fairness_latency_s": fair_latency,
            "fairness_repeats": fair_repeats,
            "makespan_target": MAKESPAN_TARGET,
            "fairness_target": FAIRNESS_TARGET,
        },
        data=data,
        notes=[
            f"makespan check: median over repeats of makespan / ideal; target <= "
            f"{MAKESPAN_TARGET:g}. The semaphore row is the same load with no scheduler.",
            "waits: submitted -> the backend starts the call, over all calls; in the "
            "fairness rows, the light agents' calls only (p50/p99 median over repeats).",
            f"fairness check: median over repeats of fair p99 / fifo p99; target <= "
            f"{FAIRNESS_TARGET:g}. Light agents arrive over the first half of the backlog.",
        ],
    )


def _agent_mean_waits(runs: Waits) -> list[float]:
    """Each agent's mean wait over all its calls in all timed runs."""
    per_agent: dict[str, list[float]] = {}
    for waits in runs:
        for key, wait in waits.items():
            per_agent.setdefault(key.partition("/")[0], []).append(wait)
    return [statistics.fmean(values) for values in per_agent.values()]
