"""Durable-log overhead: the seed loop with every step committed to the SQLite journal.

Rows, per step: the trivial-module loop without and with the journal (the issue's
target compares these two); two floors: the SQLite commit alone (one ``insert`` of a
small JSON record in autocommit WAL mode, the least any per-step SQLite log costs) and
one ``os.write`` alone (the least any log that survives SIGKILL costs: the record must
leave the process before the next step); Taxi-v4 Q-learning through the full Agent
without and with the journal.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

from _common import BenchResult, Case, Check, clock, interleave, ratio_text
from _modules import trivial_agent
from bench_qlearning_throughput import make_agent
from llmagentos import Agent
from llmagentos.durable import DurableRunner

NAME = "durable_log"
TARGET = 1.5


def plain(make: type[Agent] | object, steps: int, episodes: int) -> Case:
    def run() -> tuple[int, int]:
        agent = make()  # type: ignore[operator]
        start = clock()
        result = agent.run(episodes, seed=0, max_steps=steps)
        return clock() - start, sum(e.length for e in result.episodes)

    return run


def durable(make: object, steps: int, episodes: int, folder: Path) -> Case:
    count = [0]

    def run() -> tuple[int, int]:
        count[0] += 1
        agent = make()  # type: ignore[operator]
        runner = DurableRunner(folder / f"run-{id(count)}-{count[0]}.db")
        start = clock()
        result = runner.run(agent, episodes, seed=0, max_steps=steps)
        elapsed = clock() - start
        runner.close()
        return elapsed, sum(e.length for e in result.episodes)

    return run


def sqlite_only(steps: int, folder: Path) -> Case:
    record = json.dumps({"episode": 0, "step": 0, "observation": 0, "action": 0, "reward": 1.0})
    count = [0]

    def run() -> tuple[int, int]:
        count[0] += 1
        db = sqlite3.connect(folder / f"raw{count[0]}.db", isolation_level=None)
        db.execute("pragma journal_mode=wal")
        db.execute("pragma synchronous=normal")
        db.execute("create table steps (n integer primary key, record text)")
        start = clock()
        for n in range(steps):
            db.execute("insert into steps values (?, ?)", (n, record))
        elapsed = clock() - start
        db.close()
        return elapsed, steps

    return run


def write_only(steps: int, folder: Path) -> Case:
    """One ``os.write`` of the record per step: the least any log that survives SIGKILL costs."""
    record = (json.dumps({"episode": 0, "step": 0, "action": 0, "reward": 1.0}) + "\n").encode()
    count = [0]

    def run() -> tuple[int, int]:
        count[0] += 1
        fd = os.open(folder / f"raw{count[0]}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        start = clock()
        for _ in range(steps):
            os.write(fd, record)
        elapsed = clock() - start
        os.close(fd)
        return elapsed, steps

    return run


LABELS = {
    "trivial": "trivial modules, no journal (baseline)",
    "trivial_durable": "trivial modules, journal",
    "sqlite": "SQLite insert+commit alone (floor)",
    "write": "one os.write() per step alone (floor)",
    "taxi": "Taxi-v4 Q-learning, no journal",
    "taxi_durable": "Taxi-v4 Q-learning, journal",
}


def run(quick: bool) -> BenchResult:
    steps, repeats = (2_000, 3) if quick else (10_000, 7)
    taxi_episodes = 20 if quick else 60
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = {
            "trivial": plain(trivial_agent, steps, 1),
            "trivial_durable": durable(trivial_agent, steps, 1, folder),
            "sqlite": sqlite_only(steps, folder),
            "write": write_only(steps, folder),
            "taxi": plain(make_agent, 200, taxi_episodes),
            "taxi_durable": durable(make_agent, 200, taxi_episodes, folder),
        }
        stats = interleave(cases, repeats=repeats, warmups=1)
    base = stats["trivial"]
    rows = []
    for key, label in LABELS.items():
        item = stats[key]
        against = stats["taxi"] if key.startswith("taxi") else base
        ratio = "" if key in ("trivial", "taxi") else ratio_text(item.ratio_to(against))
        target = f"<= {TARGET:g}" if key == "trivial_durable" else ""
        rows.append([label, f"{item.median:,.0f}", ratio, target])
    checks = [
        Check(
            name=NAME,
            measured=f"journaled loop {stats['trivial_durable'].median:,.0f} ns/step",
            baseline=f"same loop unjournaled {base.median:,.0f} ns/step",
            ratio=stats["trivial_durable"].ratio_to(base),
            target=TARGET,
            direction="<=",
            note=(
                f"floor: a bare SQLite commit costs {stats['sqlite'].median:,.0f} ns, "
                f"{stats['sqlite'].median / base.median:.0f}x the whole unjournaled step; "
                f"even one write() syscall costs {stats['write'].median / base.median:.1f}x"
            ),
        ),
        Check(
            name=f"{NAME}_taxi",
            measured=f"journaled Taxi {stats['taxi_durable'].median:,.0f} ns/step",
            baseline=f"Taxi unjournaled {stats['taxi'].median:,.0f} ns/step",
            ratio=stats["taxi_durable"].ratio_to(stats["taxi"]),
            target=TARGET,
            direction="<=",
            note="Taxi-v4 Q-learning through the full Agent (info: the issue's target is "
            "on the trivial loop)",
        ),
    ]
    return BenchResult(
        name=NAME,
        title=f"durable_log: {steps:,} steps x {repeats} repeats; Taxi {taxi_episodes} episodes",
        columns=["loop", "median ns/step", "ratio vs unjournaled", "target"],
        rows=rows,
        checks=checks,
        params={"steps": steps, "repeats": repeats, "taxi_episodes": taxi_episodes},
        data={key: {"label": LABELS[key], **item.to_dict()} for key, item in stats.items()},
        notes=["each journaled step is committed (WAL, synchronous=NORMAL) before the next"],
    )
