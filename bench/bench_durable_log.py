"""Durable-log overhead: the seed loop with every step logged to the journal.

Rows, per step: Taxi-v4 Q-learning through the full Agent without and with the journal
(the check: the default ``process`` mode, SIGKILL-safe) and with ``power_loss``
durability (group commit: an ``fsync`` per 100 steps at most); the trivial-module loop
the same three ways (information: a step there costs under a microsecond, less than
one system call); and floors measured alongside: a bare SQLite insert+commit per step
(``synchronous=NORMAL``, then ``OFF``), one ``os.write`` per step, and one store of the
record into a shared file mapping (``mmap``), which is how the steps log is written.
A journaled case is timed over ``runner.run``; closing the journal (SQLite's checkpoint,
and in ``power_loss`` mode the last group's sync: once per run, no step's work) is
timed apart and reported in the notes.
"""

from __future__ import annotations

import json
import mmap
import os
import sqlite3
import statistics
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


def durable(
    make: object, steps: int, episodes: int, folder: Path, *, durability: str, closes: list[int]
) -> Case:
    count = [0]

    def run() -> tuple[int, int]:
        count[0] += 1
        agent = make()  # type: ignore[operator]
        path = folder / f"run-{durability}-{id(count)}-{count[0]}.db"
        runner = DurableRunner(path, durability=durability)
        start = clock()
        result = runner.run(agent, episodes, seed=0, max_steps=steps)
        elapsed = clock() - start
        # Closing leaves no step work undone (each step is in the log already); it is
        # SQLite's checkpoint and, in power_loss mode, one last sync: once per run.
        start = clock()
        runner.close()
        closes.append(clock() - start)
        return elapsed, sum(e.length for e in result.episodes)

    return run


def sqlite_only(steps: int, folder: Path, synchronous: str) -> Case:
    record = json.dumps({"episode": 0, "step": 0, "observation": 0, "action": 0, "reward": 1.0})
    count = [0]

    def run() -> tuple[int, int]:
        count[0] += 1
        db = sqlite3.connect(folder / f"raw-{synchronous}-{count[0]}.db", isolation_level=None)
        db.execute("pragma journal_mode=wal")
        db.execute(f"pragma synchronous={synchronous}")
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


def map_only(steps: int, folder: Path) -> Case:
    """One store of the record into a shared map of a preallocated file per step."""
    record = (json.dumps({"episode": 0, "step": 0, "action": 0, "reward": 1.0}) + "\n").encode()
    count = [0]

    def run() -> tuple[int, int]:
        count[0] += 1
        fd = os.open(folder / f"raw{count[0]}.map", os.O_RDWR | os.O_CREAT)
        size = steps * len(record)
        os.posix_fallocate(fd, 0, size)
        shared = mmap.mmap(fd, size)
        width = len(record)
        start = clock()
        for n in range(0, size, width):
            shared[n : n + width] = record
        elapsed = clock() - start
        shared.close()
        os.close(fd)
        return elapsed, steps

    return run


LABELS = {
    "taxi": "Taxi-v4 Q-learning, no journal (baseline)",
    "taxi_durable": "Taxi-v4 Q-learning, journal (process: survives SIGKILL)",
    "taxi_power": "Taxi-v4 Q-learning, journal (power_loss: group fsync)",
    "trivial": "trivial modules, no journal",
    "trivial_durable": "trivial modules, journal (process)",
    "trivial_power": "trivial modules, journal (power_loss)",
    "sqlite": "SQLite insert+commit, synchronous=NORMAL (floor)",
    "sqlite_off": "SQLite insert+commit, synchronous=OFF (floor)",
    "write": "one os.write() per step alone (floor)",
    "map": "one store into a shared file map per step (floor)",
}


def run(quick: bool) -> BenchResult:
    steps, repeats = (2_000, 3) if quick else (10_000, 7)
    taxi_episodes = 20 if quick else 60
    closes: dict[str, list[int]] = {"process": [], "power_loss": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = {
            "taxi": plain(make_agent, 200, taxi_episodes),
            "taxi_durable": durable(
                make_agent,
                200,
                taxi_episodes,
                folder,
                durability="process",
                closes=closes["process"],
            ),
            "taxi_power": durable(
                make_agent,
                200,
                taxi_episodes,
                folder,
                durability="power_loss",
                closes=closes["power_loss"],
            ),
            "trivial": plain(trivial_agent, steps, 1),
            "trivial_durable": durable(
                trivial_agent, steps, 1, folder, durability="process", closes=[]
            ),
            "trivial_power": durable(
                trivial_agent, steps, 1, folder, durability="power_loss", closes=[]
            ),
            "sqlite": sqlite_only(steps, folder, "normal"),
            "sqlite_off": sqlite_only(steps, folder, "off"),
            "write": write_only(steps, folder),
            "map": map_only(steps, folder),
        }
        stats = interleave(cases, repeats=repeats, warmups=1)
    taxi, trivial = stats["taxi"], stats["trivial"]
    rows = []
    for key, label in LABELS.items():
        item = stats[key]
        against = taxi if key.startswith("taxi") else trivial
        ratio = "" if key in ("trivial", "taxi") else ratio_text(item.ratio_to(against))
        target = f"<= {TARGET:g}" if key == "taxi_durable" else ""
        rows.append([label, f"{item.median:,.0f}", ratio, target])
    checks = [
        Check(
            name=NAME,
            measured=f"journaled Taxi {stats['taxi_durable'].median:,.0f} ns/step",
            baseline=f"Taxi unjournaled {taxi.median:,.0f} ns/step",
            ratio=stats["taxi_durable"].ratio_to(taxi),
            target=TARGET,
            direction="<=",
            note=(
                "durability=process (survives SIGKILL); power_loss costs "
                f"{ratio_text(stats['taxi_power'].ratio_to(taxi))}; the trivial loop "
                f"{ratio_text(stats['trivial_durable'].ratio_to(trivial))} (a bare SQLite "
                f"commit alone is {ratio_text(stats['sqlite'].ratio_to(trivial))} of it)"
            ),
        ),
    ]
    return BenchResult(
        name=NAME,
        title=f"durable_log: Taxi {taxi_episodes} episodes; trivial {steps:,} steps; "
        f"{repeats} repeats",
        columns=["loop", "median ns/step", "ratio vs unjournaled", "target"],
        rows=rows,
        checks=checks,
        params={"steps": steps, "repeats": repeats, "taxi_episodes": taxi_episodes},
        data={key: {"label": LABELS[key], **item.to_dict()} for key, item in stats.items()},
        notes=[
            "each journaled step's record is in the page cache (the steps log, a shared map) "
            "before the next step; power_loss also syncs it to disk in groups of <= 100 steps "
            "or 50 ms, and before every tool or model call",
            "closing a Taxi journal, once per run, not in the ns/step: median "
            f"{statistics.median(closes['process']) / 1e6:.1f} ms (process), "
            f"{statistics.median(closes['power_loss']) / 1e6:.1f} ms (power_loss)",
        ],
    )
