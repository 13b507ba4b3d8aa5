"""Cache hits against a 100 ms model call: CachedModel with a memory and an SQLite cache.

The miss is a FunctionModel that sleeps 0.1 s (a fast LLM call), behind the same
CachedModel, each call a new request. Hits repeat one warmed request through
``await model.arequest(request)``: key (SHA-256 of the canonical JSON), lookup, reply.
The bare row is ``await FunctionModel.arequest`` with no sleep, the cheapest model call
there is, for scale. Everything runs in one ``asyncio.Runner``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from _common import BenchResult, Case, Check, clock, interleave, ratio_text
from llmagentos.llm.cache import CachedModel, MemoryCache, SQLiteCache
from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import Message, ModelRequest, ModelSettings

NAME = "llm_cache"
SPEEDUP_TARGET = 1000.0
HIT_TARGET_NS = 50_000.0
MISS_SECONDS = 0.1

REQUEST = ModelRequest(
    messages=(
        Message.system("You are a careful planner for a grid-world agent. Answer in JSON."),
        Message.user("Observation: agent at (2, 3), goal at (7, 1), walls at (4, 2), (4, 3)."),
    ),
    settings=ModelSettings(temperature=0, max_tokens=64),
)


async def _slow(request: ModelRequest) -> str:
    await asyncio.sleep(MISS_SECONDS)
    return '{"action": "east"}'


def _fast(request: ModelRequest) -> str:
    return '{"action": "east"}'


def timed(runner: asyncio.Runner, call: Callable[[int], Awaitable[object]], units: int) -> Case:
    """A case awaiting ``call(i)`` for i in range(units) inside the runner's loop."""

    async def batch() -> int:
        start = clock()
        for index in range(units):
            await call(index)
        return clock() - start

    def run() -> tuple[int, int]:
        return runner.run(batch()), units

    return run


LABELS = {
    "memory": "hit, MemoryCache",
    "sqlite": "hit, SQLiteCache (WAL file)",
    "bare": "bare await FunctionModel, no sleep",
    "miss": f"miss, FunctionModel sleeping {MISS_SECONDS:g} s",
}


def run(quick: bool) -> BenchResult:
    hits, misses, repeats = (5_000, 2, 5) if quick else (20_000, 3, 11)
    with tempfile.TemporaryDirectory() as folder, asyncio.Runner() as runner:
        memory = CachedModel(FunctionModel(_fast), cache=MemoryCache())
        sqlite_cache = SQLiteCache(Path(folder) / "cache.db")
        sqlite = CachedModel(FunctionModel(_fast), cache=sqlite_cache)
        for model in (memory, sqlite):
            runner.run(model.arequest(REQUEST))  # warm: the rows below are all hits
        slow = CachedModel(FunctionModel(_slow), cache=MemoryCache())
        bare = FunctionModel(_fast)
        fresh = iter(range(10**9))

        def miss(_index: int) -> Awaitable[object]:
            text = f"{REQUEST.messages[-1].content} #{next(fresh)}"
            messages = (*REQUEST.messages[:-1], Message.user(text))
            return slow.arequest(REQUEST.model_copy(update={"messages": messages}))

        cases = {
            "memory": timed(runner, lambda _i: memory.arequest(REQUEST), hits),
            "sqlite": timed(runner, lambda _i: sqlite.arequest(REQUEST), hits // 4),
            "bare": timed(runner, lambda _i: bare.arequest(REQUEST), hits),
            "miss": timed(runner, miss, misses),
        }
        stats = interleave(cases, repeats=repeats, warmups=1)
        stored = sqlite_cache.stats.to_dict()
        sqlite_cache.close()
    miss_stats = stats["miss"]
    speedup = {key: miss_stats.ratio_to(stats[key]) for key in ("memory", "sqlite")}
    memory_us = stats["memory"].median / 1e3
    versus_bare = stats["memory"].ratio_to(stats["bare"])
    rows = [
        [
            label,
            f"{stats[key].median / 1e3:,.1f}",
            f"{stats[key].minimum / 1e3:,.1f}",
            ratio_text(miss_stats.ratio_to(stats[key])),
        ]
        for key, label in LABELS.items()
    ]
    checks = [
        Check(
            name=f"{NAME}_{key}_hit_speedup",
            measured=f"{key} hit {stats[key].median / 1e3:,.1f} us",
            baseline=f"miss {miss_stats.median / 1e6:,.1f} ms",
            ratio=speedup[key],
            target=SPEEDUP_TARGET,
            direction=">=",
        )
        for key in ("memory", "sqlite")
    ]
    checks.append(
        Check(
            name=f"{NAME}_memory_hit_abs",
            measured=f"memory hit {memory_us:,.1f} us",
            baseline=f"target {HIT_TARGET_NS / 1e3:g} us (fixed)",
            ratio=stats["memory"].median / HIT_TARGET_NS,
            target=1.0,
            direction="<=",
            note=f"vs bare FunctionModel call in the same run: {versus_bare:.2f}x",
        )
    )
    return BenchResult(
        name=NAME,
        title=f"llm_cache: {hits:,} hits / {misses} misses per repeat x {repeats} repeats",
        columns=["call", "median us/call", "min us/call", "miss time / this"],
        rows=rows,
        checks=checks,
        params={
            "hits": hits,
            "sqlite_hits": hits // 4,
            "misses": misses,
            "repeats": repeats,
            "miss_seconds": MISS_SECONDS,
            "speedup_target": SPEEDUP_TARGET,
            "hit_target_ns": HIT_TARGET_NS,
        },
        data={
            **{key: {"label": LABELS[key], **item.to_dict()} for key, item in stats.items()},
            "memory_hit_vs_bare": versus_bare,
            "memory_hit_median_us": memory_us,
            "sqlite_stats": stored,
            "memory_hit_spread_us": statistics.pstdev(stats["memory"].per_unit_ns) / 1e3,
        },
        notes=[
            "speedup: median over repeats of (miss ns/call / hit ns/call in that repeat); "
            f"target >= {SPEEDUP_TARGET:g}",
            f"memory hit: absolute target <= {HIT_TARGET_NS / 1e3:g} us per call "
            f"(ratio = median / {HIT_TARGET_NS / 1e3:g} us); "
            f"{versus_bare:.2f}x a bare FunctionModel call in this run",
        ],
    )
