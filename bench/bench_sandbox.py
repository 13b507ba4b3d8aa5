"""Sandbox start-to-result latency against a plain interpreter subprocess.

Candidate: ``Sandbox.run_python("print(1)")`` (probe cached; each run stages a fresh
workdir, makes the run's cgroup, starts bubblewrap inside it, drops privileges, sets
rlimits, captures output, empties and removes the cgroup, cleans up). Also timed: the
same under ``confinement="rlimit"`` (no cgroup), to show what the cgroup costs.
Baseline: ``python -E -s -S -B -u -X utf8 -c "print(1)"`` through ``asyncio``'s
subprocess, same interpreter, same flags, no confinement. Also timed: ``run_tests``
on a two-test task.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from _common import BenchResult, Check, clock, interleave
from llmagentos.sandbox import Sandbox, SandboxLimits
from llmagentos.sandbox.backends import interpreter
from llmagentos.sandbox.sandbox import PYTHON_FLAGS

NAME = "sandbox"
RATIO_TARGET = 3.0
SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = (
    "from solution import *\n\ndef test_small():\n    assert add(1, 2) == 3\n\n"
    "def test_negative():\n    assert add(-1, -2) == -3\n"
)


def run(quick: bool) -> BenchResult:
    runs, repeats = (5, 3) if quick else (10, 7)
    sandbox = Sandbox(SandboxLimits(), backend="auto")
    rlimit_only = Sandbox(SandboxLimits(), backend="auto", confinement="rlimit")
    python, _ = interpreter()

    async def plain() -> None:
        process = await asyncio.create_subprocess_exec(
            python, *PYTHON_FLAGS, "-c", "print(1)",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await process.communicate()

    def timed_async(make: Callable[[], Awaitable[None]]) -> tuple[int, int]:
        async def batch() -> int:
            start = clock()
            for _ in range(runs):
                await make()
            return clock() - start

        return asyncio.run(batch()), runs

    async def sandboxed() -> None:
        result = await sandbox.arun_python("print(1)")
        assert result.stdout == "1\n", result

    async def rlimited() -> None:
        result = await rlimit_only.arun_python("print(1)")
        assert result.stdout == "1\n", result

    async def tests() -> None:
        report = await sandbox.arun_tests(SOLUTION, TESTS)
        assert report.pass_rate == 1.0, report.feedback()

    stats = interleave(
        {
            "plain": lambda: timed_async(plain),
            "sandbox": lambda: timed_async(sandboxed),
            "rlimit": lambda: timed_async(rlimited),
            "run_tests": lambda: timed_async(tests),
        },
        repeats=repeats,
        warmups=1,
    )
    ratio = stats["sandbox"].ratio_to(stats["plain"])
    started = time.perf_counter()
    sandbox.run_python("print(1)")
    one = time.perf_counter() - started
    labels = {
        "plain": "plain python -c subprocess (same flags)",
        "sandbox": f"Sandbox.run_python ({sandbox.backend}, {sandbox.confinement})",
        "rlimit": f"Sandbox.run_python ({sandbox.backend}, rlimit fallback)",
        "run_tests": "Sandbox.run_tests, 2 tests",
    }
    rows = [
        [
            label,
            f"{stats[key].median / 1e6:,.1f}",
            f"{stats[key].minimum / 1e6:,.1f}",
            f"{stats[key].ratio_to(stats['plain']):.2f}",
        ]
        for key, label in labels.items()
    ]
    return BenchResult(
        name=NAME,
        title=f"sandbox: {runs} runs per repeat x {repeats} repeats, backend {sandbox.backend}",
        columns=["case", "median ms/run", "min ms/run", "vs plain"],
        rows=rows,
        checks=[
            Check(
                name=f"{NAME}_latency_ratio",
                measured=f"sandbox {stats['sandbox'].median / 1e6:,.1f} ms",
                baseline=f"plain {stats['plain'].median / 1e6:,.1f} ms",
                ratio=ratio,
                target=RATIO_TARGET,
                direction="<=",
            )
        ],
        params={
            "runs": runs,
            "repeats": repeats,
            "backend": sandbox.backend,
            "confinement": sandbox.confinement,
        },
        data={
            **{key: {"label": labels[key], **item.to_dict()} for key, item in stats.items()},
            "ratio": ratio,
            "single_sync_run_seconds": one,
            "spread_ms": statistics.pstdev(stats["sandbox"].per_unit_ns) / 1e6,
        },
        notes=[
            "ratio: median over repeats of sandbox ms/run / plain ms/run in that repeat; "
            f"target <= {RATIO_TARGET:g}",
        ],
    )
