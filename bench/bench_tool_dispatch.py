"""Tool-call dispatch overhead: a no-op tool called directly and through each tool layer.

All calls are awaited in one event loop. Rows: the bare function call (baseline); the
``@tool``'s ``acall`` (argument validation by pydantic, timing, result wrapping); the
registry's ``run_calls`` for one call (lookup, JSON argument parsing, ``gather``); a
:class:`~llmagentos.tools.gate.ToolGate` (policy, keys, audit line in memory); one
model turn of 8 calls through the gate; then a *sync* no-op through ``acall``, on a
thread of the :class:`~llmagentos.tools.pool.ToolPool`, and the same no-op with
``isolation="process"``, in a warm worker process (JSON over a socket each way). The
second check is the price of process isolation: the process call against the thread
call. A worker's cold start (a fresh interpreter importing the tool) is timed once.
"""

from __future__ import annotations

import asyncio
import json

from _common import BenchResult, Case, Check, clock, interleave, ratio_text
from llmagentos.llm.types import ToolCall
from llmagentos.safety import ToolPolicy
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.gate import ToolGate
from llmagentos.tools.pool import ToolPool

NAME = "tool_dispatch"
TARGET = 100.0  # one async no-op call through the registry vs a bare call
ISOLATION = "tool_isolation"
ISOLATION_TARGET = 100.0  # a no-op in a warm worker process vs in a pool thread (ours)


async def noop(value: int) -> int:
    """Return the value."""
    return value


def sync_noop(value: int) -> int:
    """Return the value."""
    return value


@tool(isolation="process", name="sync_noop")
def isolated_noop(value: int) -> int:
    """Return the value, in a worker process."""
    return value


def batch(runner: asyncio.Runner, calls: int, make: object, per_round: int = 1) -> Case:
    async def loop() -> int:
        start = clock()
        for _ in range(calls // per_round):
            await make()  # type: ignore[operator]
        return clock() - start

    def run() -> tuple[int, int]:
        return runner.run(loop()), calls

    return run


LABELS = {
    "direct": "direct await of the function (baseline)",
    "acall": "FunctionTool.acall (validate, wrap)",
    "registry": "ToolRegistry.run_calls, 1 call",
    "gate": "ToolGate.run_calls, 1 call (policy, audit)",
    "gate8": "ToolGate.run_calls, 8 calls per turn (per call)",
    "thread": "sync no-op, FunctionTool.acall on a ToolPool thread",
    "process": 'sync no-op, isolation="process", warm worker',
}


def run(quick: bool) -> BenchResult:
    calls, repeats = (4_000, 3) if quick else (40_000, 7)
    fn_tool = tool(noop)
    registry = ToolRegistry([fn_tool])
    gate = ToolGate(registry, policy=ToolPolicy(allow=["noop"], deny=["rm*"]))
    one = [ToolCall(id="c", name="noop", arguments=json.dumps({"value": 1}))]
    eight = one * 8
    sync_tool = tool(sync_noop)
    pool = ToolPool(max_workers=1, max_processes=1)
    with asyncio.Runner() as runner:
        start = clock()
        first = runner.run(isolated_noop.acall({"value": 1}, pool=pool))
        cold_ms = (clock() - start) / 1e6
        assert first.ok, first.error
        cases = {
            "direct": batch(runner, calls, lambda: noop(1)),
            "acall": batch(runner, calls, lambda: fn_tool.acall({"value": 1})),
            "registry": batch(runner, calls, lambda: registry.run_calls(one)),
            "gate": batch(runner, calls, lambda: gate.run_calls(one)),
            "gate8": batch(runner, calls, lambda: gate.run_calls(eight), per_round=8),
            # Fewer calls: a thread hop costs tens of microseconds, a process round trip
            # hundreds; the per-call figures stay comparable.
            "thread": batch(runner, calls // 20, lambda: sync_tool.acall({"value": 1}, pool=pool)),
            "process": batch(
                runner, calls // 200, lambda: isolated_noop.acall({"value": 1}, pool=pool)
            ),
        }
        stats = interleave(cases, repeats=repeats, warmups=1)
        pool.close()
        # The gate's in-memory audit grows by a line per call; not part of the measure.
        gate.audit.entries.clear()  # type: ignore[attr-defined]
    base = stats["direct"]
    rows = []
    for key, label in LABELS.items():
        ratio = "" if key == "direct" else ratio_text(stats[key].ratio_to(base))
        rows.append([label, f"{stats[key].median:,.0f}", ratio])
    check = Check(
        name=NAME,
        measured=f"registry {stats['registry'].median:,.0f} ns/call",
        baseline=f"direct {base.median:,.0f} ns/call",
        ratio=stats["registry"].ratio_to(base),
        target=TARGET,
        direction="<=",
        note=f"gate {stats['gate'].median / 1000:.1f} us/call, "
        f"{stats['gate8'].median / 1000:.1f} us/call in turns of 8",
    )
    isolation = Check(
        name=ISOLATION,
        measured=f"process {stats['process'].median / 1000:,.0f} us/call",
        baseline=f"thread {stats['thread'].median / 1000:,.1f} us/call",
        ratio=stats["process"].ratio_to(stats["thread"]),
        target=ISOLATION_TARGET,
        direction="<=",
        note=f"a worker's cold start {cold_ms:,.0f} ms (once per tool)",
    )
    return BenchResult(
        name=NAME,
        title=f"tool_dispatch: {calls:,} calls x {repeats} repeats, async no-op tool",
        columns=["path", "median ns/call", "ratio vs direct"],
        rows=rows,
        checks=[check, isolation],
        params={"calls": calls, "repeats": repeats, "cold_start_ms": cold_ms},
        data={key: {"label": LABELS[key], **item.to_dict()} for key, item in stats.items()},
    )
