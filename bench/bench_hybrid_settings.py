"""How the hybrid's gain over Q-learning depends on its settings and on how good the LLM is.

The hybrid's two trust settings, ``trust_after`` (visits before Q may overrule the LLM)
and ``margin`` (how far Q's best must beat its second), are swept against several
advisors on the main job's maze: the embedded SmolLM2-135M, and stand-ins
(:mod:`_standins`) that head for the dock, are wrong in 30% or 45% of cells (three
different sets of wrong cells each, as a different CPU's rounding gives a small model
different answers in a few cells), or are random. Each cell of the table is the
hybrid's mean training return minus plain Q-learning's, paired by seed, with its 95%
Student-t interval; ``!`` marks a setting whose greedy policy missed the dock on some
seed. Everything else is the config's (``examples/configs/text_maze_llm.toml``).

A setting that only pays off with one model's particular answers would be tuned to that
model, not chosen: the defaults are the setting that wins against every advisor that
is right more often than chance.

    python bench/bench_hybrid_settings.py [--seeds 10] [--quick]
    python bench/run.py --only hybrid_settings
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import ROOT, BenchResult, console, environment, print_table, write_json
from _stats import Interval
from bench_hybrid_ablation import CONFIG, SeedRun, _with_planning, run_arm
from llmagentos.config import load_config

NAME = "hybrid_settings"

SETTINGS: tuple[tuple[int, float], ...] = ((10, 0.5), (10, 0.0), (5, 0.5), (5, 0.0), (0, 0.0))
"""(trust_after, margin) pairs; (10, 0.5) were the defaults before (5, 0.0)."""

ADVISORS: tuple[str | None, ...] = (
    None,  # the config's model: SmolLM2
    "toward",
    "wrong30",
    "wrong30:b",
    "wrong30:c",
    "wrong45",
    "wrong45:b",
    "wrong45:c",
    "random",
)


def _advisor_label(advisor: str | None) -> str:
    return "smollm2" if advisor is None else advisor


def sweep(
    seeds: Sequence[int],
    settings: Sequence[tuple[int, float]],
    advisors: Sequence[str | None],
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Every setting against every advisor, and Q-learning once, on the same seeds."""
    config = load_config(CONFIG)
    assert config.agent.planning.type == "hybrid"
    epsilon = float(config.agent.planning.params.get("epsilon", 0.05))
    baseline = [run_arm("q", config, epsilon, seed) for seed in seeds]
    cells: dict[str, dict[str, Any]] = {}
    for trust_after, margin in settings:
        tuned = _with_planning(config, "agent", trust_after=trust_after, margin=margin)
        for advisor in advisors:
            label = f"trust_after={trust_after} margin={margin:g} {_advisor_label(advisor)}"
            progress(label)
            runs = [run_arm("hybrid", tuned, epsilon, seed, llm=advisor) for seed in seeds]
            cells[label] = _cell(runs, baseline) | {
                "trust_after": trust_after,
                "margin": margin,
                "advisor": _advisor_label(advisor),
            }
    return {"epsilon": epsilon, "baseline": [b.to_dict() for b in baseline], "cells": cells}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _cell(runs: Sequence[SeedRun], baseline: Sequence[SeedRun]) -> dict[str, Any]:
    pairs = zip(runs, baseline, strict=True)
    gains = [_mean(r.train_returns) - _mean(b.train_returns) for r, b in pairs]
    return {
        "gain": Interval.of(gains).to_dict(),
        "wins": sum(g > 0 for g in gains),
        "seeds": len(gains),
        "eval_all_docked": all(all(r.eval_successes) for r in runs),
        "gains": gains,
    }


def _text(cell: dict[str, Any]) -> str:
    gain = cell["gain"]
    mark = "" if cell["eval_all_docked"] else " !"
    return f"{gain['mean']:+.1f} ± {gain['half_width']:.1f}{mark}"


def run(quick: bool, seeds: int = 10) -> BenchResult:
    """``bench/run.py``'s entry. ``--quick``: 3 seeds, stand-ins only, two settings."""
    chosen = list(range(3 if quick else seeds))
    settings = SETTINGS[::3] if quick else SETTINGS
    advisors = [a for a in ADVISORS if a is not None] if quick else list(ADVISORS)
    started = time.perf_counter()
    with console.status("hybrid settings") as status:
        data = sweep(chosen, settings, advisors, status.update)
    labels = [_advisor_label(a) for a in advisors]
    rows = []
    for trust_after, margin in settings:
        prefix = f"trust_after={trust_after} margin={margin:g}"
        rows.append(
            [str(trust_after), f"{margin:g}"]
            + [_text(data["cells"][f"{prefix} {label}"]) for label in labels]
        )
    return BenchResult(
        name=NAME,
        title=(
            f"Hybrid minus Q-learning, mean training return per episode ({len(chosen)} seeds, "
            f"epsilon {data['epsilon']:g}, paired by seed)"
        ),
        columns=["trust_after", "margin", *labels],
        rows=rows,
        checks=[],  # a finding, not a target
        params={
            "config": str(CONFIG.relative_to(ROOT)),
            "seeds": chosen,
            "settings": [list(s) for s in settings],
            "advisors": labels,
            "seconds": time.perf_counter() - started,
        },
        data=data,
        notes=[
            "± : 95% Student-t interval over seeds; ! : a greedy evaluation missed the dock.",
            "wrongP[:salt]: the 'toward' stand-in, wrong in P% of cells (which cells: the salt).",
        ],
        label_columns=2,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 seeds, stand-ins only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (an interval needs two)")
    result = run(args.quick, seeds=args.seeds)
    print_table(result)
    write_json(args.out / f"{NAME}.json", {"environment": environment(), **result.to_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
