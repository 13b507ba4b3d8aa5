"""How much ``import llmagentos`` costs, next to the libraries it builds on.

Each case is a fresh interpreter (``python -c ...``), timed from outside; the bare
interpreter (``python -c pass``) is subtracted to get the cost of the import alone. The
check compares that cost with ``import numpy``, the lightest of llmagentos'
dependencies: the seed API must not pull the heavy ones (numpy, pydantic, gymnasium,
asyncio) in at import time. ``python -X importtime`` gives the in-process total too.
"""

from __future__ import annotations

import re
import subprocess
import sys

from _common import BenchResult, Case, Check, clock, interleave

NAME = "import_time"
TARGET = 0.5
STATEMENTS = {
    "bare": "pass",
    "llmagentos": "import llmagentos",
    "numpy": "import numpy",
    "pydantic": "import pydantic",
    "gymnasium": "import gymnasium",
}


def interpreter_case(statement: str, runs: int) -> Case:
    def run() -> tuple[int, int]:
        start = clock()
        for _ in range(runs):
            subprocess.run([sys.executable, "-c", statement], check=True)
        return clock() - start, runs

    return run


def importtime_total_us(module: str) -> int:
    """The cumulative microseconds ``-X importtime`` reports for ``module`` itself."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for line in reversed(result.stderr.splitlines()):
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s?(\S+)$", line)
        if match and match.group(2) == module:
            return int(match.group(1))
    raise RuntimeError(f"no importtime line for {module}")


def run(quick: bool) -> BenchResult:
    runs, repeats = (2, 3) if quick else (5, 7)
    stats = interleave(
        {key: interpreter_case(code, runs) for key, code in STATEMENTS.items()},
        repeats=repeats,
        warmups=1,
    )
    bare = stats["bare"].median
    cost_ms = {key: max(item.median - bare, 0.0) / 1e6 for key, item in stats.items()}
    importtime_ms = {key: importtime_total_us(key) / 1000 for key in STATEMENTS if key != "bare"}
    ratio = cost_ms["llmagentos"] / cost_ms["numpy"] if cost_ms["numpy"] else None
    rows = [
        [
            STATEMENTS[key],
            f"{stats[key].median / 1e6:.1f}",
            "-" if key == "bare" else f"{cost_ms[key]:.1f}",
            "-" if key == "bare" else f"{importtime_ms[key]:.1f}",
        ]
        for key in STATEMENTS
    ]
    check = Check(
        name=NAME,
        measured=f"import llmagentos {cost_ms['llmagentos']:.1f} ms",
        baseline=f"import numpy {cost_ms['numpy']:.1f} ms",
        ratio=ratio,
        target=TARGET,
        direction="<=",
    )
    return BenchResult(
        name=NAME,
        title=f"import_time: fresh interpreters, {runs} per repeat x {repeats} repeats",
        columns=["python -c", "median ms", "import cost ms", "-X importtime ms"],
        rows=rows,
        checks=[check],
        params={"runs": runs, "repeats": repeats, "target": TARGET},
        data={
            key: {
                "statement": STATEMENTS[key],
                "import_cost_ms": cost_ms[key],
                **stats[key].to_dict(),
            }
            | ({"importtime_ms": importtime_ms[key]} if key in importtime_ms else {})
            for key in STATEMENTS
        },
        notes=[
            "import cost = median wall time minus the bare interpreter's; "
            f"target: llmagentos <= {TARGET:g} x numpy"
        ],
    )
