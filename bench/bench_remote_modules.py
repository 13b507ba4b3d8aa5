"""An Agent step with remote modules: one remote module, all four remote, vs in-process.

A real ``llmagentos serve`` process on loopback serves Taxi-v4's agent (the config in
``examples/configs/taxi.toml``); the client agents run the same number of steps:

- in-process: the whole agent built from the config (baseline);
- one remote: the learning module served, everything else local;
- all four remote: every module served (one session), the client only loops.

Reported per step; the issue sets no target for these rows.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from _common import BenchResult, Case, Check, clock, interleave, ratio_text
from llmagentos import Agent
from llmagentos._processes import start_server
from llmagentos.build import build_agent
from llmagentos.config import load_config
from llmagentos.service import remote_modules

NAME = "remote_modules"
ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "configs" / "taxi.toml"
TARGET = 1_000.0  # informational: a remote step stays within 1000x an in-process one


def _serve() -> tuple[subprocess.Popen[bytes], str]:
    return start_server(["llmagentos", "serve", str(CONFIG)])


def episodes_of(make: object, episodes: int) -> Case:
    def run() -> tuple[int, int]:
        agent = make()  # type: ignore[operator]
        start = clock()
        result = agent.run(episodes, seed=0, max_steps=100)
        elapsed = clock() - start
        agent.close()
        return elapsed, sum(e.length for e in result.episodes)

    return run


LABELS = {
    "local": "all in-process (baseline)",
    "one": "one remote module (learning)",
    "four": "all four modules remote",
}


def run(quick: bool) -> BenchResult:
    episodes, repeats = (2, 3) if quick else (6, 5)
    config = load_config(CONFIG)
    process, url = _serve()
    try:

        def local() -> Agent:
            return build_agent(config).agent

        def one() -> Agent:
            built = build_agent(config).agent
            (learning,) = remote_modules(url, "learning")
            return Agent(
                built.perception_module, built.planning_module, built.execution_module, learning
            )

        def four() -> Agent:
            return Agent(*remote_modules(url, "perception", "planning", "execution", "learning"))

        cases = {
            "local": episodes_of(local, episodes),
            "one": episodes_of(one, episodes),
            "four": episodes_of(four, episodes),
        }
        stats = interleave(cases, repeats=repeats, warmups=1)
    finally:
        process.terminate()
        process.wait(timeout=15)
    base = stats["local"]
    rows = []
    for key, label in LABELS.items():
        ratio = "" if key == "local" else ratio_text(stats[key].ratio_to(base))
        rows.append([label, f"{stats[key].median / 1000:,.1f}", ratio])
    check = Check(
        name=NAME,
        measured=f"four remote {stats['four'].median / 1000:,.0f} us/step",
        baseline=f"in-process {base.median / 1000:,.1f} us/step",
        ratio=stats["four"].ratio_to(base),
        target=TARGET,
        direction="<=",
        note=f"one remote module: {stats['one'].median / 1000:,.0f} us/step",
    )
    return BenchResult(
        name=NAME,
        title=f"remote_modules: Taxi-v4, {episodes} episodes x {repeats} repeats, loopback",
        columns=["agent", "median us/step", "ratio vs in-process"],
        rows=rows,
        checks=[check],
        params={"episodes": episodes, "repeats": repeats, "max_steps": 100},
        data={key: {"label": LABELS[key], **item.to_dict()} for key, item in stats.items()},
    )
