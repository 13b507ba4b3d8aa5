"""Shared helpers: interleaved timing, checks against targets, tables and JSON.

Every benchmark compares a candidate with a baseline timed in the same run: the cases
are interleaved (their order rotates each repeat) so that the noise of a shared machine
falls on both, and each ratio is the median of the per-repeat ratios.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

clock = time.perf_counter_ns
ROOT = Path(__file__).resolve().parent.parent

Case = Callable[[], tuple[int, int]]
"""Runs one batch and returns ``(elapsed_ns, units)``; it times itself so setup is excluded."""

Direction = Literal["<=", ">="]

console = Console(highlight=False)
if not console.is_terminal:
    console.width = 132  # logs and pipes: wide enough that no table wraps


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect garbage, then keep the collector off for the duration of the block."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class Stats:
    """Nanoseconds per unit (step, agent, ...), one sample per repeat."""

    per_unit_ns: list[float] = field(default_factory=list)
    units: list[int] = field(default_factory=list)

    def add(self, elapsed_ns: int, units: int) -> None:
        self.per_unit_ns.append(elapsed_ns / units)
        self.units.append(units)

    @property
    def median(self) -> float:
        return statistics.median(self.per_unit_ns)

    @property
    def minimum(self) -> float:
        return min(self.per_unit_ns)

    def ratio_to(self, baseline: Stats) -> float:
        """Median over repeats of this case's time per unit / the baseline's in that repeat.

        The cases of one repeat run back to back, so each pair shares the machine's load
        of the moment: this is steadier than a ratio of medians when the load shifts.
        """
        pairs = zip(self.per_unit_ns, baseline.per_unit_ns, strict=True)
        return statistics.median(mine / theirs for mine, theirs in pairs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_ns_per_unit": self.median,
            "min_ns_per_unit": self.minimum,
            "samples_ns_per_unit": self.per_unit_ns,
            "units_per_repeat": self.units,
        }


def interleave(cases: Mapping[str, Case], *, repeats: int, warmups: int = 1) -> dict[str, Stats]:
    """Run every case ``warmups`` times untimed, then ``repeats`` times, rotating the order."""
    names = list(cases)
    for _ in range(warmups):
        for name in names:
            with gc_paused():
                cases[name]()
    stats = {name: Stats() for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            with gc_paused():
                elapsed_ns, units = cases[name]()
            stats[name].add(elapsed_ns, units)
    return stats


@dataclass
class Check:
    """One measured ratio against its target: the unit of the summary table."""

    name: str
    measured: str
    baseline: str
    ratio: float | None
    target: float
    direction: Direction
    note: str = ""
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "ERROR"
        if self.ratio is None:
            return "SKIP"
        if self.direction == "<=":
            return "PASS" if self.ratio <= self.target else "FAIL"
        return "PASS" if self.ratio >= self.target else "FAIL"

    @property
    def target_text(self) -> str:
        return f"{self.direction} {self.target:g}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target_text": self.target_text, "status": self.status}


@dataclass
class BenchResult:
    """What one benchmark hands back: its table, its checks and its raw data."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    checks: list[Check]
    params: dict[str, Any]
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    label_columns: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "params": self.params,
            "table": {"columns": self.columns, "rows": self.rows},
            "checks": [check.to_dict() for check in self.checks],
            "data": self.data,
            "notes": self.notes,
        }


def ratio_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def print_table(result: BenchResult) -> None:
    """The benchmark's table: label columns on the left, numbers on the right."""
    table = Table(title=result.title, title_justify="left", caption_justify="left")
    for index, column in enumerate(result.columns):
        table.add_column(column, justify="left" if index < result.label_columns else "right")
    for row in result.rows:
        table.add_row(*row)
    if result.notes:
        table.caption = "\n".join(result.notes)
    console.print(table)


def _status_markup(status: str) -> str:
    colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}.get(status, "magenta")
    return f"[{colour}]{status}[/{colour}]"


def print_summary(checks: list[Check]) -> None:
    columns = ["check", "measured", "baseline (same run)", "ratio", "target", "status"]
    table = Table(title="Summary", title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index < 3 else "right")
    for check in checks:
        table.add_row(
            check.name,
            check.measured,
            check.baseline,
            ratio_text(check.ratio),
            check.target_text,
            _status_markup(check.status),
        )
    console.print(table)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


@functools.cache
def code_state() -> dict[str, Any]:
    """Which code was measured: the commit, uncommitted changes, a digest of the sources.

    Taken once, at the first call (``run.py`` makes it at start-up, when it imports the
    package), so every JSON file of a run names the same code.
    """
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    changes = _git("status", "--porcelain", "--", "src")
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "src_uncommitted_changes": None if changes is None else bool(changes),
        "src_sha256": digest.hexdigest()[:16],
    }


def environment() -> dict[str, Any]:
    """Where and when the numbers were taken (times differ by machine; ratios less so)."""
    packages = ("llmagentos", "numpy", "gymnasium", "agno", "langgraph", "rich")
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": {name: _version(name) for name in packages},
        "code": dict(code_state()),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
