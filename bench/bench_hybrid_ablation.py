"""The README's headline as an ablation: Q-learning, the loop rule, the LLM, and both.

Four arms on the main job's maze (``examples/configs/text_maze_llm.toml``), each for the
same seeds, with the same epsilon (one constant for every arm), the same learner
(its ``[agent.learning]``), the same episodes and the same greedy evaluation:

- ``q``: plain epsilon-greedy Q-learning, the config's ``[baseline]``;
- ``q_loop``: the hybrid's rule with the LLM taken out: where the hybrid would ask the
  model, Q's greedy action (ties at random) stands in, so what is left over plain
  Q-learning is the loop-breaking rule (and the "confident Q" step, which picks Q's
  best action, as greedy does anyway);
- ``hybrid_no_loop``: the hybrid with ``loop_after = 0`` (the rule off);
- ``hybrid``: the config's ``[agent]``, the full hybrid.

A fifth, control arm, ``q_skeleton``, is ``q_loop`` with the rule off: it should match
plain Q-learning, and shows that the hybrid's code path adds nothing by itself.

The model is the embedded SmolLM2-135M at temperature 0 through the process-wide
kernel, whose response cache is shared by every hybrid run of the process: each
distinct state is asked once for the whole ablation (the JSON counts the model's real
runs), and its first answer is the state's proposal in every arm and seed, as it is for
every episode of one ``llmagentos run``. Greedy decoding in llama.cpp is nearly, not
exactly, repeatable, so a second process may draw a different answer in a cell or two:
the full run asks the uncached model twice for every cell and reports how many answers
agree (and how often the advice is right).

Per arm: mean return per training episode (all, and the first ten), the greedy
evaluation's return, steps and success rate, each a mean over seeds with a 95%
Student-t interval; paired differences between arms (same seeds) give each part's
effect on its own. A table, JSON (``bench/results/hybrid_ablation.json``) and learning
curves with 95% bands (``bench/results/hybrid_ablation.png``).

    python bench/bench_hybrid_ablation.py [--seeds 10] [--epsilon 0.05] [--no-proposals]
    python bench/bench_hybrid_ablation.py --llm toward|wrong30|random [--env TextMaze-v0]
    python bench/run.py --only hybrid_ablation
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import ROOT, BenchResult, console, environment, print_table, write_json
from _standins import STAND_INS, stand_in
from _stats import Interval
from llmagentos.agent import Agent
from llmagentos.build import build_agent
from llmagentos.config import ModuleSpec, RunConfig, load_config
from llmagentos.experiment import with_overrides
from llmagentos.llm.testing import ScriptedModel
from llmagentos.modules.hybrid_planning import HybridPlanningModule, hybrid_planning
from llmagentos.modules.llm_planning import LLMPlanningModule, Proposal
from llmagentos.rl.qtable import QTable
from llmagentos.types import Features

NAME = "hybrid_ablation"
CONFIG = ROOT / "examples" / "configs" / "text_maze_llm.toml"

ARMS: dict[str, str] = {
    "q": "(a) Q-learning, epsilon-greedy",
    "q_loop": "(b) Q-learning + loop rule",
    "hybrid_no_loop": "(c) hybrid, loop rule off",
    "hybrid": "(d) hybrid (LLM + Q + loop rule)",
    "q_skeleton": "(a') control: (b) with the rule off",
}

#: The paired comparisons reported, each ``(name, arm, minus arm)``.
EFFECTS: tuple[tuple[str, str, str], ...] = (
    ("hybrid vs plain Q-learning: (d) - (a)", "hybrid", "q"),
    ("loop rule, no LLM: (b) - (a)", "q_loop", "q"),
    ("loop rule, with the LLM: (d) - (c)", "hybrid", "hybrid_no_loop"),
    ("LLM, no loop rule: (c) - (a)", "hybrid_no_loop", "q"),
    ("LLM, with the loop rule: (d) - (b)", "hybrid", "q_loop"),
    ("control: (a') - (a)", "q_skeleton", "q"),
)

# -- the Q-only arm: the hybrid's rule with greedy Q where the LLM would speak -------------


class _NeverAsked(ScriptedModel):
    """The model slot of :class:`GreedyQProposer`: asking it would be a bug here."""

    def __init__(self) -> None:
        super().__init__([])


class GreedyQProposer(LLMPlanningModule):
    """Stands in for the LLM inside the hybrid: proposes Q's best action, ties at random.

    The hybrid takes a proposal from ``cached()`` without an event loop, so that is
    where the answer comes from (it is never stale: it reads the live Q-table).
    """

    def __init__(self, q_table: QTable, action_names: Sequence[str], seed: int) -> None:
        super().__init__(_NeverAsked(), action_names, seed=seed)
        self.q_table = q_table

    def cached(self, features: Features) -> Proposal:
        scores = self.q_table.values(features)
        best = max(scores)
        ties = [i for i, value in enumerate(scores) if value == best]
        action = ties[self.rng.randrange(len(ties))] if len(ties) > 1 else ties[0]
        return Proposal(action, "greedy Q in the LLM's place", "cache")

    async def apropose(self, features: Features) -> Proposal:
        return self.cached(features)


# -- arms ---------------------------------------------------------------------------------


def _hybrid_params(config: RunConfig) -> dict[str, Any]:
    """The hybrid's settings as the config gives them, the factory's defaults filled in."""
    spec = config.agent.planning
    if spec.type != "hybrid":
        raise SystemExit(f"{CONFIG}: [agent.planning] must be the hybrid (got {spec.type!r})")
    defaults = {
        name: p.default
        for name, p in inspect.signature(hybrid_planning).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return defaults | spec.params


def _with_planning(config: RunConfig, section: str, **changes: Any) -> RunConfig:
    """``config`` whose agent is its ``section`` (agent or baseline), planner params changed."""
    agent = config.agent if section == "agent" else config.baseline
    assert agent is not None
    spec = ModuleSpec(type=agent.planning.type, **(agent.planning.params | changes))
    return config.model_copy(update={"agent": agent.model_copy(update={"planning": spec})})


def build_arm(
    arm: str, config: RunConfig, epsilon: float, seed: int, llm: str | None = None
) -> Agent:
    """The agent of ``arm`` for ``seed`` (the config already seeded with ``seed``).

    ``llm`` names a stand-in LLM (:mod:`_standins`) to use instead of the config's model.
    """
    changes: dict[str, Any] = {"epsilon": epsilon}
    if llm is not None:
        changes["model"] = stand_in(llm)
    if arm == "hybrid":
        return build_agent(_with_planning(config, "agent", **changes)).agent
    if arm == "hybrid_no_loop":
        return build_agent(_with_planning(config, "agent", **changes, loop_after=0)).agent
    built = build_agent(_with_planning(config, "baseline", epsilon=epsilon))
    if arm == "q":
        return built.agent
    params = _hybrid_params(config)
    q_table = built.q_table
    assert q_table is not None
    names = list(getattr(built.env.unwrapped, "action_names", ()))
    planner = HybridPlanningModule(
        q_table,
        GreedyQProposer(q_table, names, seed),
        trust_after=params["trust_after"],
        margin=params["margin"],
        epsilon=epsilon,
        loop_after=params["loop_after"] if arm == "q_loop" else 0,
        seed=seed,
    )
    agent = built.agent
    return Agent(
        agent.perception_module,
        planner,
        agent.execution_module,
        agent.learning_module,
        name=agent.name,
    )


@dataclass(slots=True)
class SeedRun:
    """One arm on one seed."""

    seed: int
    train_returns: list[float]
    eval_returns: list[float]
    eval_lengths: list[int]
    eval_successes: list[bool]
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "train_returns": self.train_returns,
            "eval_returns": self.eval_returns,
            "eval_lengths": self.eval_lengths,
            "eval_successes": self.eval_successes,
            "seconds": self.seconds,
            "decisions_by_source": self.counts,
        }


def run_arm(
    arm: str, config: RunConfig, epsilon: float, seed: int, llm: str | None = None
) -> SeedRun:
    """Train and evaluate ``arm`` on ``seed`` exactly as ``llmagentos run --seed`` would."""
    seeded = with_overrides(config, seed=seed)
    assert seeded.train is not None
    assert seeded.eval is not None
    agent = build_arm(arm, seeded, epsilon, seed, llm)
    started = time.perf_counter()
    try:
        train = agent.run(seeded.train.episodes, seed=seeded.train.seed, train=True)
        evaluation = agent.run(seeded.eval.episodes, seed=seeded.eval.seed, train=False)
    finally:
        agent.close()
    planner = agent.planning_module
    counts = dict(planner.counts) if isinstance(planner, HybridPlanningModule) else {}
    return SeedRun(
        seed=seed,
        train_returns=[e.total_reward for e in train.episodes],
        eval_returns=[e.total_reward for e in evaluation.episodes],
        eval_lengths=[e.length for e in evaluation.episodes],
        eval_successes=[e.succeeded for e in evaluation.episodes],
        seconds=time.perf_counter() - started,
        counts=counts,
    )


# -- statistics ---------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


METRICS: dict[str, Callable[[SeedRun], float]] = {
    "train_return": lambda r: _mean(r.train_returns),
    "train_return_first10": lambda r: _mean(r.train_returns[:10]),
    "eval_return": lambda r: _mean(r.eval_returns),
    "eval_steps": lambda r: _mean(r.eval_lengths),
    "eval_success": lambda r: _mean([float(s) for s in r.eval_successes]),
}


def summarize(runs: dict[str, list[SeedRun]]) -> dict[str, dict[str, Interval]]:
    return {
        arm: {m: Interval.of([f(r) for r in rs]) for m, f in METRICS.items()}
        for arm, rs in runs.items()
    }


def effects(runs: dict[str, list[SeedRun]]) -> dict[str, dict[str, Any]]:
    """Paired differences (same seed) of train and eval return, with their intervals."""
    out: dict[str, dict[str, Any]] = {}
    for name, arm, other in EFFECTS:
        if arm not in runs or other not in runs:
            continue
        row: dict[str, Any] = {"arm": arm, "minus": other}
        for metric in ("train_return", "eval_return"):
            f = METRICS[metric]
            diffs = [f(a) - f(b) for a, b in zip(runs[arm], runs[other], strict=True)]
            row[metric] = Interval.of(diffs).to_dict()
            row[f"{metric}_seeds_better"] = sum(d > 0 for d in diffs)
            row[f"{metric}_seeds_worse"] = sum(d < 0 for d in diffs)
        out[name] = row
    return out


def learning_curves(runs: dict[str, list[SeedRun]]) -> dict[str, list[dict[str, float]]]:
    """Per arm and training episode: the mean return over seeds and its 95% interval."""
    curves = {}
    for arm, rs in runs.items():
        episodes = zip(*(r.train_returns for r in rs), strict=True)
        curves[arm] = [Interval.of(list(values)).to_dict() for values in episodes]
    return curves


def save_plot(path: Path, curves: dict[str, list[dict[str, float]]], title: str) -> bool:
    """Learning curves with 95% bands; ``False`` when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    figure = Figure(figsize=(9, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for arm, points in curves.items():
        if arm == "q_skeleton":
            continue  # the control overlaps (a); it is in the JSON and the table
        x = range(len(points))
        mean = [p["mean"] for p in points]
        axes.plot(x, mean, lw=1.6, label=ARMS[arm])
        axes.fill_between(
            x, [p["ci95_low"] for p in points], [p["ci95_high"] for p in points], alpha=0.18
        )
    axes.set_xlabel("training episode")
    axes.set_ylabel("return (mean over seeds, 95% band)")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return True


# -- the benchmark ------------------------------------------------------------------------


def proposal_map(config: RunConfig) -> dict[str, Any]:
    """Ask the embedded model, uncached, for every cell of the maze twice.

    Measures two things: how repeatable the model's answers are at temperature 0 (the
    cells where its two answers differ are listed), and how often its advice is right:
    an open side toward the dock (the bearing the observation states), or a step of a
    shortest route.
    """
    from llmagentos.envs.make import make_env
    from llmagentos.llm.models import make_model
    from llmagentos.modules.base import run_sync
    from llmagentos.modules.llm_planning import llm_planning

    params = _hybrid_params(config)
    env = make_env(config.env.id).unwrapped
    planner = llm_planning(
        model=make_model(str(params["model"])),
        env=env,
        temperature=float(params["temperature"]),
        cache_size=0,
    )
    cells = [cell for cell in env.open_cells if cell != env.dock]
    moves = ((-1, 0), (0, 1), (1, 0), (0, -1))
    first, second, toward, shortest = [], [], 0, 0
    for cell in cells:
        text = env.descriptions[cell]
        one, two = (run_sync(planner.apropose(text)) for _ in range(2))
        first.append(one.action)
        second.append(two.action)
        dr, dc = moves[one.action]
        target = (cell[0] + dr, cell[1] + dc)
        bearing = (env.dock[0] - cell[0], env.dock[1] - cell[1])
        heads = (dr and dr * bearing[0] > 0) or (dc and dc * bearing[1] > 0)
        toward += bool(env.is_open(target) and heads)
        shortest += env.is_open(target) and env.distance_to_dock(target) == (
            (env.distance_to_dock(cell) or 0) - 1
        )
    return {
        "cells": len(cells),
        "same_answer_twice": sum(a == b for a, b in zip(first, second, strict=True)),
        "open_side_toward_dock": toward,
        "on_a_shortest_route": shortest,
        "answers": dict(Counter(env.action_names[a] for a in first)),
        "differing": {
            f"{r},{c}": [env.action_names[a], env.action_names[b]]
            for (r, c), a, b in zip(cells, first, second, strict=True)
            if a != b
        },
        "model_calls": planner.calls,
        "fallbacks": planner.failures,
        "actions": {
            f"{r},{c}": env.action_names[a] for (r, c), a in zip(cells, first, strict=True)
        },
    }


def _model_runs() -> dict[str, int] | None:
    """How often the kernel's embedded-model backend really ran, and its cache hits."""
    from llmagentos.kernel.default import kernel

    record = kernel()._backends.get("local:smollm2")
    cache = getattr(getattr(record, "model", None), "cache", None)
    if cache is None:
        return None
    return {"model_runs": cache.stats.misses, "cache_hits": cache.stats.hits}


def ablation(
    *,
    seeds: Sequence[int],
    epsilons: Sequence[float],
    arms: Sequence[str],
    plot_dir: Path,
    proposals: bool = False,
    llm: str | None = None,
    env: str | None = None,
) -> BenchResult:
    """Run ``arms`` for every seed and epsilon; ``llm``: a stand-in; ``env``: another maze."""
    config = load_config(CONFIG)
    if env is not None:
        config = config.model_copy(update={"env": config.env.model_copy(update={"id": env})})
    if config.baseline is None or config.train is None or config.eval is None:
        raise SystemExit(f"{CONFIG}: needs [baseline], [train] and [eval]")
    params = _hybrid_params(config)
    columns = [
        "epsilon",
        "arm",
        "train return",
        "first 10",
        "eval return",
        "eval steps",
        "eval success",
    ]
    rows: list[list[str]] = []
    data: dict[str, Any] = {}
    notes: list[str] = []
    for epsilon in epsilons:
        runs: dict[str, list[SeedRun]] = {}
        for arm in arms:
            console.print(f"epsilon {epsilon:g}, {ARMS[arm]}: seeds {list(seeds)}")
            runs[arm] = [run_arm(arm, config, epsilon, seed, llm) for seed in seeds]
        summary = summarize(runs)
        for arm in arms:
            s = summary[arm]
            rows.append(
                [
                    f"{epsilon:g}",
                    ARMS[arm],
                    s["train_return"].text(),
                    s["train_return_first10"].text(),
                    s["eval_return"].text(),
                    s["eval_steps"].text(),
                    s["eval_success"].text(2),
                ]
            )
        paired = effects(runs)
        for name, row in paired.items():
            tr, ev = row["train_return"], row["eval_return"]
            better, worse = "_seeds_better", "_seeds_worse"
            notes.append(
                f"eps {epsilon:g}, {name}: train {tr['mean']:+.1f} ± {tr['half_width']:.1f} "
                f"(better/worse on {row['train_return' + better]}/{row['train_return' + worse]} "
                f"of {len(seeds)} seeds), eval {ev['mean']:+.1f} ± {ev['half_width']:.1f} "
                f"({row['eval_return' + better]}/{row['eval_return' + worse]})"
            )
        curves = learning_curves(runs)
        suffix = "" if llm is None and env is None else f"_{llm or 'smollm2'}_{config.env.id}"
        image = plot_dir / f"{NAME}{suffix}_eps{epsilon:g}.png"
        plotted = save_plot(
            image, curves, f"{config.env.id}, epsilon {epsilon:g}, {len(seeds)} seeds"
        )
        data[f"epsilon={epsilon:g}"] = {
            "summary": {arm: {m: i.to_dict() for m, i in s.items()} for arm, s in summary.items()},
            "effects": paired,
            "learning_curves": curves,
            "runs": {arm: [r.to_dict() for r in rs] for arm, rs in runs.items()},
            "plot": str(image) if plotted else None,
        }
    model = _model_runs() if llm is None else None
    if model is not None:
        notes.append(
            f"SmolLM2 ran {model['model_runs']} times for the whole ablation; "
            f"{model['cache_hits']} more proposals came from the kernel's response cache "
            "(each state's first answer stands for the whole ablation)."
        )
    answers = proposal_map(config) if proposals and llm is None else None
    if answers is not None:
        notes.append(
            f"SmolLM2 alone, uncached, asked twice per cell: the same answer both times in "
            f"{answers['same_answer_twice']} of {answers['cells']} cells; an open side toward "
            f"the dock in {answers['open_side_toward_dock']}, a step of a shortest route in "
            f"{answers['on_a_shortest_route']}; its answers: {answers['answers']}."
        )
    notes.append("± : 95% Student-t interval over seeds; effects are paired by seed.")
    return BenchResult(
        name=NAME,
        title=(
            f"Hybrid ablation on {config.env.id}, LLM {llm or params['model']}: "
            f"{len(seeds)} seeds, {config.train.episodes} training + "
            f"{config.eval.episodes} greedy eval episodes per seed"
        ),
        columns=columns,
        rows=rows,
        checks=[],  # a finding, not a target
        params={
            "config": str(CONFIG.relative_to(ROOT)),
            "env": config.env.id,
            "llm": llm or params["model"],
            "seeds": list(seeds),
            "epsilons": list(epsilons),
            "arms": {arm: ARMS[arm] for arm in arms},
            "train_episodes": config.train.episodes,
            "eval_episodes": config.eval.episodes,
            "hybrid": {
                k: params[k]
                for k in (
                    "model",
                    "trust_after",
                    "margin",
                    "loop_after",
                    "cache_size",
                    "temperature",
                )
            },
            "learning": config.agent.learning.model_dump(),
            "eval_seed": "train seed + 10000 (as llmagentos run --seed)",
        },
        data=data | {"model": model, "proposals": answers},
        notes=notes,
        label_columns=2,
    )


def default_epsilons() -> list[float]:
    """The config's epsilon (agent and baseline share it), then 0.1 to see how much it matters."""
    epsilon = float(_hybrid_params(load_config(CONFIG))["epsilon"])
    return [epsilon] if epsilon == 0.1 else [epsilon, 0.1]


def run(quick: bool) -> BenchResult:
    """``bench/run.py``'s entry: 10 seeds, two epsilons, the proposal map.

    ``--quick`` is a smoke run of the machinery: 3 seeds, one epsilon, and the ``toward``
    stand-in instead of SmolLM2 (no model to load), so its numbers are not the headline's.
    """
    if quick:
        return ablation(
            seeds=[0, 1, 2],
            epsilons=default_epsilons()[:1],
            arms=list(ARMS),
            plot_dir=ROOT / "bench" / "results",
            llm="toward",
        )
    return ablation(
        seeds=list(range(10)),
        epsilons=default_epsilons(),
        arms=list(ARMS),
        plot_dir=ROOT / "bench" / "results",
        proposals=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument(
        "--epsilon",
        type=float,
        action="append",
        help="epsilon of every arm (repeatable; default: the config's, then 0.1)",
    )
    parser.add_argument(
        "--no-proposals",
        action="store_true",
        help="skip asking the uncached model twice per cell (about 40 s)",
    )
    parser.add_argument("--arm", action="append", choices=list(ARMS), help="only these arms")
    parser.add_argument(
        "--llm", choices=STAND_INS, help="a stand-in LLM instead of the config's SmolLM2"
    )
    parser.add_argument("--env", help="another maze id (default: the config's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds: need at least 2 seeds for an interval")
    for value in args.epsilon or ():
        if not 0 <= value <= 1:
            parser.error(f"--epsilon: must be within [0, 1] (got {value})")
    started = time.perf_counter()
    result = ablation(
        seeds=list(range(args.seeds)),
        epsilons=args.epsilon or default_epsilons(),
        arms=args.arm or list(ARMS),
        plot_dir=args.out,
        proposals=not args.no_proposals,
        llm=args.llm,
        env=args.env,
    )
    seconds = time.perf_counter() - started
    print_table(result)
    plain = args.llm is None and args.env is None
    suffix = "" if plain else f"_{args.llm or 'smollm2'}_{result.params['env']}"
    path = args.out / f"{NAME}{suffix}.json"
    write_json(
        path, {"quick": False, "seconds": seconds, "environment": environment()} | result.to_dict()
    )
    console.print(f"{NAME}: {seconds:.1f} s, wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
