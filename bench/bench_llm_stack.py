"""Overhead of the whole wrapper stack on the cache-miss path, per call.

The stack is ``CachedModel(AccountedModel(RetryModel(RateLimitedModel(fn))))`` around
a FunctionModel with no latency; every call is a new request, so each one misses the
cache, passes the retry loop, reserves a request and its estimated tokens, is accounted,
and its reply is stored. The baseline awaits the same FunctionModel directly with the
same requests. Limits are set high enough never to wait. Each repeat builds a fresh
stack (empty cache) before its timed loop. Extra rows (no target): each wrapper alone,
and the stack with ``settings.timeout`` set (the retry layer then arms a deadline).
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable, Sequence

from _common import BenchResult, Case, Check, clock, interleave
from llmagentos.llm.base import Model
from llmagentos.llm.cache import CachedModel, MemoryCache
from llmagentos.llm.limits import RateLimitedModel
from llmagentos.llm.retry import RetryModel
from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import Message, ModelRequest, ModelSettings
from llmagentos.llm.usage import AccountedModel, UsageTracker

NAME = "llm_stack"
TARGET_NS = 1_000_000.0  # 1% of a typical 100 ms LLM call
PRICES = {"test:function": (0.15, 0.6)}


def _reply(request: ModelRequest) -> str:
    return '{"action": "east"}'


def requests(count: int, *, timeout: float | None = None) -> list[ModelRequest]:
    settings = ModelSettings(temperature=0, max_tokens=64, timeout=timeout)
    system = Message.system("You are a careful planner for a grid-world agent. Answer in JSON.")
    return [
        ModelRequest(
            messages=(system, Message.user(f"Observation {index}: agent at (2, 3), goal (7, 1).")),
            settings=settings,
        )
        for index in range(count)
    ]


def full_stack(inner: Model) -> Model:
    """The order docs/llm-wrappers.md recommends, outermost first."""
    limited = RateLimitedModel(inner, requests_per_minute=1e9, tokens_per_minute=1e12)
    tracker = UsageTracker(PRICES)
    accounted = AccountedModel(RetryModel(limited), tracker, agent="bench", token_budget=10**12)
    return CachedModel(accounted, cache=MemoryCache(max_entries=100_000))


BUILDERS: dict[str, Callable[[Model], Model]] = {
    "stack": full_stack,
    "direct": lambda inner: inner,
    "cache": lambda inner: CachedModel(inner, cache=MemoryCache(max_entries=100_000)),
    "retry": RetryModel,
    "limits": lambda inner: RateLimitedModel(
        inner, requests_per_minute=1e9, tokens_per_minute=1e12
    ),
    "accounted": lambda inner: AccountedModel(inner, UsageTracker(PRICES), agent="bench"),
    "stack_timeout": full_stack,
}

LABELS = {
    "stack": "Cached(Accounted(Retry(RateLimited))), miss",
    "direct": "await FunctionModel directly (baseline)",
    "cache": "CachedModel alone, miss",
    "retry": "RetryModel alone",
    "limits": "RateLimitedModel alone",
    "accounted": "AccountedModel alone",
    "stack_timeout": "whole stack, settings.timeout=30",
}


def case(runner: asyncio.Runner, key: str, batch: Sequence[ModelRequest]) -> Case:
    async def loop() -> int:
        model = BUILDERS[key](FunctionModel(_reply))  # fresh: an empty cache every repeat
        start = clock()
        for request in batch:
            await model.arequest(request)
        return clock() - start

    def run() -> tuple[int, int]:
        return runner.run(loop()), len(batch)

    return run


def run(quick: bool) -> BenchResult:
    calls, repeats = (2_000, 7) if quick else (10_000, 15)
    plain, with_timeout = requests(calls), requests(calls, timeout=30.0)
    with asyncio.Runner() as runner:
        cases = {
            key: case(runner, key, with_timeout if key == "stack_timeout" else plain)
            for key in LABELS
        }
        stats = interleave(cases, repeats=repeats, warmups=1)
    direct = stats["direct"]

    def added_ns(key: str) -> float:
        # Median over repeats of (this - direct) in that repeat, as for the ratios.
        pairs = zip(stats[key].per_unit_ns, direct.per_unit_ns, strict=True)
        return statistics.median(mine - theirs for mine, theirs in pairs)

    rows = []
    for key, label in LABELS.items():
        extra = "" if key == "direct" else f"{added_ns(key) / 1e3:,.1f}"
        share = "" if key == "direct" else f"{added_ns(key) / 1e8:.3%}"
        rows.append([label, f"{stats[key].median / 1e3:,.1f}", extra, share])
    added = added_ns("stack")
    check = Check(
        name=NAME,
        measured=f"stack adds {added / 1e3:,.1f} us/call",
        baseline=f"direct {direct.median / 1e3:,.1f} us; target 1 ms (fixed)",
        ratio=added / TARGET_NS,
        target=1.0,
        direction="<=",
    )
    return BenchResult(
        name=NAME,
        title=f"llm_stack: {calls:,} cache-miss calls x {repeats} repeats, no-latency model",
        columns=["model", "median us/call", "added us/call", "added / 100 ms call"],
        rows=rows,
        checks=[check],
        params={"calls": calls, "repeats": repeats, "warmups": 1, "target_ns": TARGET_NS},
        data={
            **{key: {"label": LABELS[key], **item.to_dict()} for key, item in stats.items()},
            "added_ns": {key: added_ns(key) for key in LABELS if key != "direct"},
        },
        notes=[
            "added: median over repeats of (row us/call - direct us/call in that repeat); "
            "check: stack's added time / 1 ms (1% of a 100 ms LLM call), target <= 1"
        ],
    )
