"""Does an agent with memory improve across trials where the same agent without it does not?

Every arm is the same agent: :class:`MemoryPerception` (hybrid search of the agent's
skill memory, filtered to this environment) -> :class:`MemoryPlanningModule` (the LLM
planner; the lessons about the state in its prompt, plus rules) -> TextMaze. They differ
in one thing each:

- ``control``: nothing is written to memory (the learner learns nothing), so every
  search finds nothing and the planner's prompt is the plain LLM planner's;
- ``memory``: :class:`MemoryLearning` writes the rule-distilled lessons of each trial
  (episode) into the agent's memory; the planner's prompt shows them and its rules
  follow a remembered route to the dock and veto actions a lesson marks bad;
- ``prompt_only`` (``--arms``): lessons written and shown in the prompt, rules off:
  what the model makes of the lessons by itself.

Per seed: one maze (``--maze random``, the default: a new 5x5 layout per seed, see
``llmagentos.envs.maze_layouts``; ``small``/``large``: the built-in layout), the same
start every trial (``--starts fixed``, the layout's S, farthest from the dock: the same
task retried) or a random start per trial from the seeded environment (``random``: the
same starts in every arm), a fresh memory store per arm and seed, ``--trials`` trials.
Reported per trial index: success rate and return, mean over seeds with a 95% Student-t
interval; and per arm the change from the first trials to the last ones, and the paired
memory - control difference.

The LLM is the embedded SmolLM2-135M at temperature 0 through the process-wide kernel
(its response cache shared by every arm: the same prompt gets the same answer), or a
deterministic stand-in (``--llm wrong30|toward``) that reads only the observation line,
ignores the lessons in its prompt and keeps to the actions its reply's schema allows.

    python bench/bench_memory_learning.py                  # SmolLM2, 5 random mazes, fixed start
    python bench/bench_memory_learning.py --llm wrong30 --seeds 10 --trials 10 [--starts random]
    python bench/bench_memory_learning.py --arm control --arm memory --arm prompt_only
    python bench/run.py --only memory_learning
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import ROOT, BenchResult, console, environment, print_table, write_json
from _stats import Interval
from llmagentos.agent import Agent
from llmagentos.envs.maze_layouts import random_layout
from llmagentos.envs.text_maze import LAYOUTS, TextMaze
from llmagentos.llm.base import Model
from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import ModelRequest
from llmagentos.memory import MemoryManager
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.llm_planning import prompt_parts_of, resolve_model
from llmagentos.modules.memory_learning import MemoryLearning
from llmagentos.modules.memory_perception import MemoryPerception
from llmagentos.modules.memory_planning import MemoryPlanningModule

NAME = "memory_learning"
ARMS: dict[str, str] = {
    "control": "no memory (nothing written)",
    "memory": "memory: lessons in prompt + rules",
    "prompt_only": "memory: lessons in prompt, rules off",
}
STAND_INS = ("wrong30", "toward")
ACTIONS = ("north", "east", "south", "west")

# -- the stand-in LLM -------------------------------------------------------------------------


def _observation_line(request: ModelRequest) -> str:
    user = next(m.content or "" for m in request.messages if m.role == "user")
    return next((line for line in user.splitlines() if line.startswith("You are")), user)


def _preferences(text: str) -> list[str]:
    """Open sides toward the dock (the farther leg first), other open sides, then walls."""
    sides = dict(re.findall(r"(North|East|South|West): (open|wall)", text))
    legs = sorted(
        ((int(n), d) for n, d in re.findall(r"(\d+) steps? (north|east|south|west)", text)),
        reverse=True,
    )
    order = [d for _, d in legs if sides.get(d.capitalize()) == "open"]
    order += [a for a in ACTIONS if sides.get(a.capitalize()) == "open" and a not in order]
    return order + [a for a in ACTIONS if a not in order]


def stand_in(name: str) -> FunctionModel:
    """``toward``: the first preference; ``wrong30``: in ~30% of cells (by a hash of the
    text) the side after it, clockwise, wall or not. Either keeps to the schema's enum."""
    if name not in STAND_INS:
        raise ValueError(f"unknown stand-in {name!r}: one of {', '.join(STAND_INS)}")

    def answer(request: ModelRequest) -> str:
        text = _observation_line(request)
        order = _preferences(text)
        digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        if name == "wrong30" and digest % 10 < 3:
            wrong = ACTIONS[(ACTIONS.index(order[0]) + 1) % 4]
            order = [wrong, *(a for a in order if a != wrong)]
        schema = request.output_schema or {}
        allowed = schema.get("properties", {}).get("action", {}).get("enum", list(ACTIONS))
        action = next(a for a in order if a in allowed)
        return json.dumps({"reason": f"{action} looks best", "action": action})

    return FunctionModel(answer, model_id=f"stand-in:{name}")


# -- one arm on one seed ----------------------------------------------------------------------


MAZE_SIZE = 5  # random layouts: 5 x 5 cells (9 rooms), about 17 open cells


def maze_rows(maze: str, seed: int) -> tuple[str, ...]:
    if maze == "random":
        return random_layout(seed, height=MAZE_SIZE, width=MAZE_SIZE, loops=1)
    return LAYOUTS[maze]


@dataclass(slots=True)
class SeedRun:
    seed: int
    returns: list[float]
    successes: list[bool]
    lengths: list[int]
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    model_calls: int = 0
    lessons: int = 0
    searches: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "returns": self.returns,
            "successes": self.successes,
            "lengths": self.lengths,
            "seconds": self.seconds,
            "decisions": self.counts,
            "model_calls": self.model_calls,
            "lessons_in_memory": self.lessons,
            "searches": self.searches,
        }


def run_arm(
    arm: str,
    seed: int,
    *,
    maze: str,
    trials: int,
    max_steps: int,
    llm: str,
    embedder: str | None,
    folder: Path,
    starts: str = "random",
) -> SeedRun:
    """``arm`` for ``trials`` episodes on ``seed``'s maze, with a fresh memory store."""
    rows = maze_rows(maze, seed)
    env = TextMaze(rows, max_steps=max_steps, random_start=starts == "random")
    env_id = f"TextMaze-{maze}-{seed}"
    model: Model = (
        resolve_model(llm, agent=f"{arm}-{seed}") if llm not in STAND_INS else stand_in(llm)
    )
    manager = MemoryManager(folder / f"{arm}-{seed}.db", embedder=embedder)
    memory = manager.for_agent(f"maze-agent-{seed}", tenant="bench")
    perception = MemoryPerception(memory, where={"env": env_id})
    planner = MemoryPlanningModule(
        model,
        env.action_names,
        rules=arm != "prompt_only",
        seed=seed,
        **prompt_parts_of(env),
    )
    learner: LearningModule = (
        LearningModule()
        if arm == "control"
        else MemoryLearning(
            memory,
            env=env_id,
            action_names=env.action_names,
            metadata={"maze": maze, "seed": seed},
            run=f"seed{seed}",
        )
    )
    agent = Agent(perception, planner, ExecutionModule(env), learner, name=f"{arm}-{seed}")
    started = time.perf_counter()
    try:
        result = agent.run(trials, seed=seed, train=True)
    finally:
        agent.close()
    lessons = memory.skills.count()
    manager.close()
    return SeedRun(
        seed=seed,
        returns=[e.total_reward for e in result.episodes],
        successes=[e.succeeded for e in result.episodes],
        lengths=[e.length for e in result.episodes],
        seconds=time.perf_counter() - started,
        counts=dict(planner.counts),
        model_calls=planner.calls,
        lessons=lessons,
        searches=perception.searches,
    )


# -- statistics -------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def per_trial(runs: list[SeedRun], metric: str) -> list[Interval]:
    """Per trial index: the metric's mean over seeds and its 95% interval."""
    series = [[float(x) for x in (r.successes if metric == "success" else r.returns)] for r in runs]
    return [Interval.of(list(values)) for values in zip(*series, strict=True)]


def window(run: SeedRun, metric: str, part: slice) -> float:
    values = run.successes if metric == "success" else run.returns
    return _mean([float(x) for x in values[part]])


def save_plot(path: Path, curves: dict[str, dict[str, list[Interval]]], title: str) -> bool:
    """Success rate and return per trial, 95% bands; ``False`` without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    figure = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    for index, (metric, label) in enumerate((("success", "success rate"), ("return", "return"))):
        axes = figure.add_subplot(1, 2, index + 1)
        for arm, by_metric in curves.items():
            points = by_metric[metric]
            x = range(1, len(points) + 1)
            axes.plot(x, [p.mean for p in points], lw=1.6, marker="o", ms=3, label=ARMS[arm])
            axes.fill_between(
                x, [p.mean - p.half for p in points], [p.mean + p.half for p in points], alpha=0.18
            )
        axes.set_xlabel("trial (episode)")
        axes.set_ylabel(f"{label} (mean over seeds, 95% band)")
        axes.grid(alpha=0.3)
        if index == 0:
            axes.legend(loc="lower right", fontsize=8)
    figure.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return True


# -- the benchmark ----------------------------------------------------------------------------


def experiment(
    *,
    seeds: Sequence[int],
    trials: int,
    maze: str,
    llm: str,
    arms: Sequence[str],
    embedder: str | None,
    max_steps: int,
    plot_dir: Path,
    starts: str = "random",
) -> BenchResult:
    runs: dict[str, list[SeedRun]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for arm in arms:
            console.print(f"{ARMS[arm]}: seeds {list(seeds)}")
            runs[arm] = [
                run_arm(
                    arm,
                    seed,
                    maze=maze,
                    trials=trials,
                    max_steps=max_steps,
                    llm=llm,
                    embedder=embedder,
                    folder=Path(tmp),
                    starts=starts,
                )
                for seed in seeds
            ]
    curves = {arm: {m: per_trial(rs, m) for m in ("success", "return")} for arm, rs in runs.items()}
    columns = ["trial", *(f"{arm} success" for arm in arms), *(f"{arm} return" for arm in arms)]
    rows = [
        [
            str(t + 1),
            *(curves[arm]["success"][t].text(2) for arm in arms),
            *(curves[arm]["return"][t].text(1) for arm in arms),
        ]
        for t in range(trials)
    ]
    head, tail = slice(0, 2), slice(trials - 3, trials)
    notes: list[str] = []
    changes: dict[str, Any] = {}
    for arm in arms:
        changes[arm] = {}
        for metric in ("success", "return"):
            diffs = [window(r, metric, tail) - window(r, metric, head) for r in runs[arm]]
            interval = Interval.of(diffs)
            changes[arm][metric] = interval.to_dict()
            digits = 2 if metric == "success" else 1
            notes.append(
                f"{arm}: {metric}, last 3 trials - first 2: {interval.mean:+.{digits}f} "
                f"± {interval.half:.{digits}f} (better on {sum(d > 0 for d in diffs)}, worse on "
                f"{sum(d < 0 for d in diffs)} of {len(diffs)} seeds)"
            )
    paired: dict[str, Any] = {}
    for arm in arms:
        if arm == "control" or "control" not in runs:
            continue
        for metric in ("success", "return"):
            diffs = [
                window(a, metric, tail) - window(b, metric, tail)
                for a, b in zip(runs[arm], runs["control"], strict=True)
            ]
            interval = Interval.of(diffs)
            paired[f"{arm} - control, {metric}, last 3 trials"] = interval.to_dict()
            digits = 2 if metric == "success" else 1
            notes.append(
                f"{arm} - control, {metric} over the last 3 trials (paired by seed): "
                f"{interval.mean:+.{digits}f} ± {interval.half:.{digits}f}"
            )
    for arm in arms:
        calls = sum(r.model_calls for r in runs[arm])
        counts: dict[str, int] = {}
        for r in runs[arm]:
            for key, value in r.counts.items():
                counts[key] = counts.get(key, 0) + value
        notes.append(
            f"{arm}: {calls} model requests (before the kernel's cache); decisions {counts}"
        )
    notes.append("± : 95% Student-t interval over seeds; the same seeds, mazes and starts per arm.")
    suffix = f"_{llm.replace(':', '-')}_{maze}_{starts}"
    image = plot_dir / f"{NAME}{suffix}.png"
    title = f"TextMaze ({maze}, {starts} starts), LLM {llm}: {len(seeds)} seeds, {trials} trials"
    plotted = save_plot(image, curves, title)
    return BenchResult(
        name=NAME,
        title=f"Memory across trials on {title}",
        columns=columns,
        rows=rows,
        checks=[],  # a finding, not a target
        params={
            "seeds": list(seeds),
            "trials": trials,
            "maze": maze,
            "llm": llm,
            "arms": {arm: ARMS[arm] for arm in arms},
            "embedder": embedder,
            "max_steps": max_steps,
            "starts": starts,
        },
        data={
            "per_trial": {
                arm: {m: [i.to_dict() for i in c] for m, c in by.items()}
                for arm, by in curves.items()
            },
            "change_first2_to_last3": changes,
            "paired_last3": paired,
            "runs": {arm: [r.to_dict() for r in rs] for arm, rs in runs.items()},
            "plot": str(image) if plotted else None,
        },
        notes=notes,
        label_columns=1,
    )


def run(quick: bool) -> BenchResult:
    """``bench/run.py``'s entry: SmolLM2 on 5 random mazes, the same start every trial.

    ``--quick``: the ``wrong30`` stand-in (no model to load) in the same setting.
    """
    return experiment(
        seeds=range(5),
        trials=8,
        maze="random",
        llm="wrong30" if quick else "local:smollm2",
        arms=["control", "memory"],
        embedder="hash:256" if quick else "local:minilm",
        max_steps=40,
        plot_dir=ROOT / "bench" / "results",
        starts="fixed",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--trials", type=int, default=8, help="episodes per seed (default 8)")
    parser.add_argument("--maze", choices=["random", *LAYOUTS], default="random")
    parser.add_argument(
        "--starts",
        choices=["random", "fixed"],
        default="fixed",
        help="each trial's start: random (from the seeded env) or the layout's S every time",
    )
    parser.add_argument(
        "--llm", default="local:smollm2", help=f"a model id, or a stand-in: {', '.join(STAND_INS)}"
    )
    parser.add_argument("--arm", action="append", choices=list(ARMS), help="only these arms")
    parser.add_argument(
        "--embedder", default="local:minilm", help="the memory's embedder ('none': lexical)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="time limit per trial")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds: need at least 2 seeds for an interval")
    if args.trials < 5:
        parser.error("--trials: need at least 5 (the first 2 against the last 3)")
    started = time.perf_counter()
    result = experiment(
        seeds=list(range(args.seeds)),
        trials=args.trials,
        maze=args.maze,
        llm=args.llm,
        arms=args.arm or ["control", "memory"],
        embedder=None if args.embedder == "none" else args.embedder,
        max_steps=args.max_steps or (40 if args.maze == "random" else 50),
        plot_dir=args.out,
        starts=args.starts,
    )
    seconds = time.perf_counter() - started
    print_table(result)
    suffix = f"_{args.llm.replace(':', '-')}_{args.maze}_{args.starts}"
    path = args.out / f"{NAME}{suffix}.json"
    write_json(
        path, {"quick": False, "seconds": seconds, "environment": environment()} | result.to_dict()
    )
    console.print(f"{NAME}: {seconds:.1f} s, wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
