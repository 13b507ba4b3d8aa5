"""Many agents, one embedded model: aggregate tokens/s of SmolLM2 batched through the kernel.

N agents (1, 2, 4, 8, 16) each ask the kernel's scheduler, one call after another, what
the LLM planner asks on the main job's maze: its few-shot system prompt and one
observation, greedy. Two workloads: ``planner``, the planner's real request (its JSON
schema, so a grammar; replies of about 20 tokens) and ``text``, the same prompt without
the schema (48 tokens of free text, so decoding dominates). The scheduler is the
kernel's, with the backend's slots as the kernel sets them (``max_batch``); the response
cache is left out, so no repeat is a cache hit. Cases are interleaved (their order
rotates each repeat); a ratio is the median of per-repeat ratios against one agent.

Time to first token (a stream through the kernel, one agent, a new observation each
repeat) is measured with the prefix cache warm against an engine without one, and
greedy replies of both workloads batched (8 at a time) against the same requests one at
a time (they must be byte-identical).

Why the curve is what it is, measured in the same run: the time of a decode step of N
sequences generating together, on one thread and on every core (an engine of its own
each). On a CPU the matrix products of a Q4_1 model cost about the same per token at any
batch size (llama.cpp has no batched kernel for Q4_1 on x86: each token is its own dot
products), and a prompt token costs what a generated one does, so batching adds
throughput only where one sequence leaves the machine idle: a core that one-token steps
leave to the agents' loop (batches may take it, if it is measured faster), the fixed
cost of a step, and the prompts shared through the prefix cache.

JSON: ``bench/results/local_batching.json``; plot: ``bench/results/local_batching.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    BenchResult,
    Case,
    Check,
    clock,
    environment,
    interleave,
    print_summary,
    print_table,
    ratio_text,
    write_json,
)

NAME = "local_batching"
AGENTS = (1, 2, 4, 8, 16)
TARGET_SPEEDUP = 2.5  # 8 agents' aggregate tokens/s over one agent's
TARGET_TTFT = 0.5  # time to first token with the shared prefix cached / without
TEXT_TOKENS = 48
PLANNER_TOKENS = 64


def observations(count: int) -> list[str]:
    """Distinct observation texts of the main job's maze, from a seeded random walk."""
    from llmagentos.envs.text_maze import TextMaze

    env = TextMaze(layout="large")
    rng = random.Random(0)
    seen: dict[str, None] = {}
    obs, _ = env.reset(seed=0)
    for _ in range(20_000):
        seen[str(obs)] = None
        if len(seen) >= count:
            break
        obs, _reward, done, truncated, _info = env.step(rng.randrange(4))
        if done or truncated:
            obs, _ = env.reset(seed=rng.randrange(1000))
    return list(seen)


def planner_requests(texts: list[str], *, schema: bool, max_tokens: int) -> list[Any]:
    """The planner's request for each observation (as ``LLMPlanningModule`` sends it)."""
    from llmagentos.envs.text_maze import TextMaze
    from llmagentos.llm import Message, ModelRequest, ModelSettings
    from llmagentos.llm.testing import FunctionModel
    from llmagentos.modules.llm_planning import (
        LLMPlanningModule,
        action_names_of,
        prompt_parts_of,
    )

    env = TextMaze(layout="large")
    planner = LLMPlanningModule(
        FunctionModel(lambda _r: ""), action_names_of(env), **prompt_parts_of(env)
    )
    settings = ModelSettings(temperature=0.0, max_tokens=max_tokens)
    return [
        ModelRequest(
            messages=(Message.system(planner.system), Message.user(text)),
            output_schema=planner.schema if schema else None,
            settings=settings,
        )
        for text in texts
    ]


def agents_case(
    runner: asyncio.Runner, scheduler: Any, agents: int, calls: int, *, requests: list[Any],
    offset: list[int],
) -> Case:  # fmt: skip
    """``agents`` concurrent agents, each making ``calls`` calls in turn; units: tokens."""
    handles = [scheduler.model_for(f"agent-{agents}-{i}", "local") for i in range(agents)]

    async def agent(handle: Any, first: int) -> int:
        tokens = 0
        for k in range(calls):
            reply = await handle.arequest(requests[(first + k) % len(requests)])
            tokens += reply.usage.completion_tokens
        return tokens

    async def together(base: int) -> list[int]:
        return await asyncio.gather(*(agent(h, base + i * calls) for i, h in enumerate(handles)))

    def case() -> tuple[int, int]:
        base = offset[0]
        offset[0] += agents * calls  # fresh observations each time: no full-prompt reuse
        start = clock()
        counts = runner.run(together(base))
        return clock() - start, sum(counts)

    return case


def ttft_case(runner: asyncio.Runner, handle: Any, requests: list[Any], offset: list[int]) -> Case:
    """One stream through the kernel: nanoseconds to its first piece of text."""

    async def first_piece(request: Any) -> int:
        start = clock()
        async with contextlib.aclosing(handle.astream(request)) as events:
            async for event in events:
                if event.text:
                    return clock() - start  # closing the stream cancels the rest
        raise RuntimeError("the stream ended without text")

    def case() -> tuple[int, int]:
        offset[0] += 1
        return runner.run(first_piece(requests[offset[0] % len(requests)])), 1

    return case


def decode_curve(runner: asyncio.Runner, threads_batch: int, sizes: tuple[int, ...],
                 steps: int) -> dict[int, float]:  # fmt: skip
    """ms per generation step by sequences in it, on an engine of its own: N copies of a
    prompt that never ends early, decoded together. Stops growing N once a step takes
    more than a second (a contended core: more would only take long)."""
    from llmagentos.llm import Message, ModelRequest, ModelSettings
    from llmagentos.llm.local import LocalModel

    model = LocalModel(n_ctx=512, n_threads_batch=threads_batch, max_batch=max(sizes),
                       prefix_cache=0)  # fmt: skip
    request = ModelRequest(
        messages=(Message.user("Write a haiku about rain."),),  # repeats itself: no EOG
        settings=ModelSettings(temperature=0.0, max_tokens=steps),
    )
    curve: dict[int, float] = {}
    for n in sizes:
        runner.run(model.abatch([request] * n))
        stats = model.engine_stats() or {}
        curve[n] = float(stats["decode_ms_by_batch"].get(n, float("nan")))
        if curve[n] > 1000:
            break
    return curve


def save_plot(
    path: Path, curve: dict[str, dict[int, float]], decode: dict[str, dict[int, float]]
) -> bool:
    """Aggregate tokens/s by agents, and ms per token of a decode step by batch size."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    figure = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    for workload, points in curve.items():
        xs = sorted(points)
        line = left.plot(xs, [points[x] for x in xs], marker="o", label=workload)[0]
        left.axhline(points[xs[0]] * TARGET_SPEEDUP, ls=":", lw=0.9, color=line.get_color())
    left.set_xscale("log", base=2)
    left.set_xticks(
        sorted(next(iter(curve.values()))), [str(x) for x in sorted(next(iter(curve.values())))]
    )
    left.set_ylim(bottom=0)
    left.set_xlabel(f"concurrent agents (dotted: {TARGET_SPEEDUP:g}x one agent)")
    left.set_ylabel("aggregate completion tokens/s")
    left.set_title("through the kernel, one SmolLM2-135M")
    left.legend()
    left.grid(alpha=0.3)
    for threads, points in decode.items():
        sizes = sorted(points)
        right.plot(sizes, [points[n] / n for n in sizes], marker="o", label=threads)
    right.set_xscale("log", base=2)
    ticks = sorted({n for points in decode.values() for n in points})
    right.set_xticks(ticks, [str(n) for n in ticks])
    right.set_ylim(bottom=0)
    right.set_xlabel("sequences in the decode step")
    right.set_ylabel("ms per token")
    right.set_title("the reason: a decode step's cost by batch size")
    right.legend()
    right.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return True


def measure(quick: bool) -> dict[str, Any]:
    """Run the curve (both workloads) and the time to first token; return what was seen."""
    from llmagentos.kernel.default import backend_stack
    from llmagentos.kernel.scheduler import Scheduler
    from llmagentos.llm.local import LocalModel

    counts = AGENTS[:4] if quick else AGENTS
    calls, repeats = (2, 1) if quick else (3, 3)
    texts = observations(400)
    workloads = {
        "text": planner_requests(texts, schema=False, max_tokens=TEXT_TOKENS),
        "planner": planner_requests(texts, schema=True, max_tokens=PLANNER_TOKENS),
    }
    stacked, slots = backend_stack("local:smollm2")  # what the kernel would serve
    model = getattr(stacked, "inner", stacked)
    assert isinstance(model, LocalModel)
    assert model.batching
    runner = asyncio.Runner()
    scheduler = Scheduler({"local": model}, max_in_flight={"local": slots})
    offset = [0]
    seen: dict[str, Any] = {"counts": counts, "calls": calls, "repeats": repeats}
    seen |= {"model": model, "slots": slots, "rates": {}, "ratios": {}, "samples": {}}
    try:
        for workload, requests in workloads.items():
            cases = {
                str(n): agents_case(runner, scheduler, n, calls, requests=requests, offset=offset)
                for n in counts
            }
            stats = interleave(cases, repeats=repeats, warmups=1)
            seen["rates"][workload] = {int(k): 1e9 / s.median for k, s in stats.items()}
            seen["ratios"][workload] = {int(k): stats["1"].ratio_to(s) for k, s in stats.items()}
            seen["samples"][workload] = {k: s.to_dict() for k, s in stats.items()}
        seen["engine"] = engine = model.engine_stats() or {}
        # The reason for the curve: a decode step's cost by batch size, on the engine's
        # threads and on every core.
        one, every = int(engine["threads"][0]), os.cpu_count() or 1
        sizes = (1, 8) if quick else AGENTS
        steps = 12 if quick else 24
        seen["decode"] = {f"{t} thread{'s' * (t > 1)}": decode_curve(runner, t, sizes, steps)
                          for t in dict.fromkeys((one, every))}  # fmt: skip
        # Time to first token: the warm prefix cache against an engine without one.
        cold = LocalModel(max_batch=model.max_batch, prefix_cache=0)
        scheduler.add_backend("no-prefix", cold, max_in_flight=slots)
        ttft_cases = {
            name: ttft_case(
                runner, scheduler.model_for("ttft", backend), workloads["planner"], offset
            )
            for name, backend in (("prefix", "local"), ("no_prefix", "no-prefix"))
        }
        seen["ttft"] = interleave(ttft_cases, repeats=2 if quick else 5, warmups=1)
        # Greedy replies batched against the same requests one at a time.
        size = 8 if quick else 32
        sample = [r for pair in zip(*workloads.values(), strict=True) for r in pair][:size]
        together = runner.run(model.abatch(sample))
        alone = [runner.run(model.arequest(r)) for r in sample]
        seen["identical"] = (sum(a == b for a, b in zip(together, alone, strict=True)), size)
    finally:
        runner.run(scheduler.aclose())
        runner.close()
    return seen


def report(seen: dict[str, Any], plot_dir: Path | None) -> tuple[list[list[str]], list[str]]:
    """The table's rows and notes (and the plot)."""
    rates, ratios, decode = seen["rates"], seen["ratios"], seen["decode"]
    ttft, engine = seen["ttft"], seen["engine"]
    rows = [
        [workload, str(n), f"{rates[workload][n]:.1f}", ratio_text(ratios[workload][n]),
         f"{ratios[workload][n] / n:.2f}"]
        for workload in rates
        for n in seen["counts"]
    ]  # fmt: skip
    for threads, curve in decode.items():
        one = curve.get(1)
        for n, ms in sorted(curve.items()):
            speed = None if one is None else (n / ms) * one
            rows.append([f"decode step, {threads}", str(n), f"{n / ms * 1000:.1f}",
                         ratio_text(speed), f"{ms:.1f} ms"])  # fmt: skip
    rows.append([
        "TTFT", "1", f"{ttft['prefix'].median / 1e6:.0f} ms prefix cached",
        ratio_text(ttft["prefix"].ratio_to(ttft["no_prefix"])),
        f"{ttft['no_prefix'].median / 1e6:.0f} ms without",
    ])  # fmt: skip
    same, size = seen["identical"]
    rows.append(["identical replies", str(size), f"{same}/{size}", ratio_text(same / size),
                 "batched / alone"])  # fmt: skip
    notes = [
        "rows 'text'/'planner': aggregate completion tokens/s; ratio: / 1 agent (median of"
        " per-repeat ratios); per agent: ratio / N (1.00 = linear scaling)",
        "rows 'decode step': llama_decode steps of N sequences generating together (an engine"
        " of their own): tokens/s of the steps alone, ratio to one sequence, ms per step",
        f"engine: max_batch {seen['model'].max_batch}, kernel slots {seen['slots']}, threads"
        f" (one token, batch) {engine.get('threads')}; prefix hits {engine.get('prefix_hits')},"
        f" misses {engine.get('prefix_misses')},"
        f" reused tokens {engine.get('prefix_reused_tokens')}",
    ]
    default = next(iter(decode.values()))
    if 1 in default:
        best = max(default, key=lambda n: n / default[n])
        notes.append(
            f"the ceiling of batching on the engine's threads: its best decode step ({best}"
            f" sequences) gives {(best / default[best]) * default[1]:.2f}x the tokens/s of"
            " a one-sequence step"
        )
    if plot_dir is not None and save_plot(plot_dir / f"{NAME}.png", rates, decode):
        where = plot_dir / f"{NAME}.png"
        notes.append(f"plot: {where.relative_to(ROOT) if where.is_relative_to(ROOT) else where}")
    return rows, notes


def run(quick: bool, *, plot_dir: Path | None = ROOT / "bench" / "results") -> BenchResult:
    seen = measure(quick)
    rows, notes = report(seen, plot_dir)
    rates, ratios, ttft = seen["rates"], seen["ratios"], seen["ttft"]
    checks = [
        Check(
            name=f"{NAME}_{workload}",
            measured=f"8 agents {rates[workload].get(8, 0):.1f} tok/s",
            baseline=f"1 agent {rates[workload][1]:.1f} tok/s",
            ratio=ratios[workload].get(8),
            target=TARGET_SPEEDUP,
            direction=">=",
            note="aggregate tokens/s, 8 agents / 1 agent",
        )
        for workload in rates
    ]
    checks.append(
        Check(
            name=f"{NAME}_ttft",
            measured=f"{ttft['prefix'].median / 1e6:.0f} ms with the prefix cached",
            baseline=f"{ttft['no_prefix'].median / 1e6:.0f} ms without",
            ratio=ttft["prefix"].ratio_to(ttft["no_prefix"]),
            target=TARGET_TTFT,
            direction="<=",
        )
    )
    same, size = seen["identical"]
    checks.append(
        Check(
            name=f"{NAME}_identical",
            measured=f"{same}/{size} greedy replies batched equal alone",
            baseline=f"{size} requests one at a time",
            ratio=same / size,
            target=1.0,
            direction=">=",
        )
    )
    calls, repeats = seen["calls"], seen["repeats"]
    return BenchResult(
        name=NAME,
        title=f"{NAME}: SmolLM2-135M Q4_1 through the kernel, greedy, {calls} calls per agent"
        f" x {repeats} repeats",
        columns=["workload", "agents", "tokens/s", "ratio", "per agent"],
        rows=rows,
        checks=checks,
        params={
            "agents": list(seen["counts"]),
            "calls_per_agent": calls,
            "repeats": repeats,
            "text_max_tokens": TEXT_TOKENS,
            "planner_max_tokens": PLANNER_TOKENS,
            "max_batch": seen["model"].max_batch,
            "kernel_slots": seen["slots"],
        },
        data={
            "tokens_per_s": rates,
            "ratio_to_one_agent": ratios,
            "samples": seen["samples"],
            "decode_ms_by_batch": seen["decode"],  # by threads, then sequences
            "engine": seen["engine"],
            "ttft": {k: v.to_dict() for k, v in ttft.items()},
            "identical_replies": {"same": seen["identical"][0], "of": seen["identical"][1]},
        },
        notes=notes,
        label_columns=2,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 to 8 agents, one repeat")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    result = run(args.quick, plot_dir=args.out)
    print_table(result)
    print_summary(result.checks)
    write_json(args.out / f"{NAME}.json", {"environment": environment(), **result.to_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
