"""Run the llmagentos benchmark suite: one table per benchmark, a summary, and JSON files.

Usage::

    python bench/run.py [--quick] [--only NAME] [--out bench/results] [--strict]

Exit status: 1 if a benchmark crashed (or, with ``--strict``, missed its target), else 0.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# Measure this checkout's code even if another checkout is the installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import bench_durable_log
import bench_gateway
import bench_gateway_overload
import bench_hybrid_ablation
import bench_hybrid_settings
import bench_import
import bench_instantiation
import bench_lee
import bench_llm_cache
import bench_llm_stack
import bench_local_batching
import bench_local_model
import bench_memory
import bench_memory_backends
import bench_memory_learning
import bench_openai_proxies
import bench_qlearning_throughput
import bench_ray
import bench_remote_modules
import bench_sandbox
import bench_scheduler
import bench_step_overhead
import bench_tool_dispatch
from _common import (
    BenchResult,
    Check,
    code_state,
    console,
    environment,
    print_summary,
    print_table,
    write_json,
)

BENCHMARKS: dict[str, Callable[[bool], BenchResult]] = {
    bench_step_overhead.NAME: bench_step_overhead.run,
    bench_instantiation.NAME: bench_instantiation.run,
    bench_qlearning_throughput.NAME: bench_qlearning_throughput.run,
    bench_import.NAME: bench_import.run,
    bench_local_model.NAME: bench_local_model.run,
    bench_local_batching.NAME: bench_local_batching.run,
    bench_llm_cache.NAME: bench_llm_cache.run,
    bench_llm_stack.NAME: bench_llm_stack.run,
    bench_scheduler.NAME: bench_scheduler.run,
    bench_sandbox.NAME: bench_sandbox.run,
    bench_tool_dispatch.NAME: bench_tool_dispatch.run,
    bench_durable_log.NAME: bench_durable_log.run,
    bench_remote_modules.NAME: bench_remote_modules.run,
    bench_gateway.NAME: bench_gateway.run,
    bench_gateway_overload.NAME: bench_gateway_overload.run,
    bench_openai_proxies.NAME: bench_openai_proxies.run,
    bench_memory.NAME: bench_memory.run,
    bench_hybrid_ablation.NAME: bench_hybrid_ablation.run,
    bench_hybrid_settings.NAME: bench_hybrid_settings.run,
    bench_lee.NAME: bench_lee.run,
    bench_memory_backends.NAME: bench_memory_backends.run,
    bench_memory_learning.NAME: bench_memory_learning.run,
    bench_ray.NAME: bench_ray.run,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (well under a minute)")
    parser.add_argument(
        "--only", action="append", choices=list(BENCHMARKS), metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results", help="JSON output folder"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def run_one(name: str, quick: bool, out: Path) -> tuple[list[Check], dict[str, object]]:
    """Run one benchmark, print its table, write its JSON; a crash becomes an ERROR check."""
    console.rule(f"{name}{' (quick)' if quick else ''}")
    started = time.perf_counter()
    try:
        result = BENCHMARKS[name](quick)
    except Exception as err:
        traceback.print_exc()
        failed = Check(name, "crashed", "-", None, 0.0, "<=", error=f"{type(err).__name__}: {err}")
        return [failed], {"seconds": time.perf_counter() - started, "error": repr(err)}
    seconds = time.perf_counter() - started
    print_table(result)
    path = out / f"{name}.json"
    payload = {"quick": quick, "seconds": seconds, "environment": environment()}
    write_json(path, payload | result.to_dict())
    console.print(f"{name}: {seconds:.1f} s, wrote {path}")
    return result.checks, {"seconds": seconds, "file": str(path)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.only or list(BENCHMARKS)
    started = time.perf_counter()
    code = code_state()
    dirty = " + uncommitted changes in src/" if code["src_uncommitted_changes"] else ""
    console.print(f"measuring commit {code['commit']}{dirty} (src sha256 {code['src_sha256']})")
    checks: list[Check] = []
    runs: dict[str, dict[str, object]] = {}
    crashed = False
    for name in names:
        found, runs[name] = run_one(name, args.quick, args.out)
        checks += found
        crashed = crashed or "error" in runs[name]
    seconds = time.perf_counter() - started
    print_summary(checks)
    summary = {
        "quick": args.quick,
        "seconds": seconds,
        "environment": environment(),
        "benchmarks": runs,
        "checks": [check.to_dict() for check in checks],
    }
    write_json(args.out / "summary.json", summary)
    console.print(f"total: {seconds:.1f} s, wrote {args.out / 'summary.json'}")
    missed = any(check.status == "FAIL" for check in checks)
    return 1 if crashed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
