"""files.search cannot stall the process: catastrophic patterns beside a ticking event loop."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest

from llmagentos.exceptions import PatternError, PatternTooCostly
from llmagentos.llm.types import ToolCall
from llmagentos.tools import ToolRegistry, Workspace
from llmagentos.tools.patterns import compile_line_pattern

# Each takes exponential time on a backtracking engine over a line of "a"s.
CATASTROPHIC = [
    r"(a+)+$",
    r"(a|aa)+$",
    r"(.*a){20}$",
    r"(a*)*b",
    r"^(a|a?)+$",
    r"(\w+\s?)+!$",
    r"(a+)+\1$",  # with a backreference: the engine refuses it
    r"(?=(a+)+$)x",  # with a lookahead: refused too
]


@pytest.fixture
def long_lines(tmp_path: Path) -> Workspace:
    line = "a" * 5000 + "!"  # search reads 2000 characters of each line
    for index in range(3):
        (tmp_path / f"f{index}.txt").write_text(f"{line}\n" * 20 + "tail\n")
    return Workspace(tmp_path)


async def _search_with_heartbeat(registry: ToolRegistry, pattern: str) -> tuple[dict, int, int]:
    """Run files.search while a task ticks every 10 ms; (reply, ticks, late ticks)."""
    ticks = late = 0
    running = True

    async def heartbeat() -> None:
        nonlocal ticks, late
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            ticks += 1
            if now - last > 0.5:  # fifty times the period: a stalled loop, not jitter
                late += 1
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.02)
    call = ToolCall(id="c", name="files.search", arguments=json.dumps({"pattern": pattern}))
    result = await registry.run_call(call)
    running = False
    await beat
    return json.loads(result.content()), ticks, late


@pytest.mark.parametrize("pattern", CATASTROPHIC)
async def test_no_pattern_stalls_the_event_loop(long_lines: Workspace, pattern: str) -> None:
    reply, ticks, late = await _search_with_heartbeat(long_lines.registry(), pattern)
    assert late == 0, f"the loop stalled {late} times during {pattern!r}"
    assert ticks >= 1
    if reply["ok"]:
        value = reply["value"]
        assert value["files_searched"] == 3 and not value["timed_out"]
        assert all(m["text"].startswith("a") for m in value["matches"])
    else:  # refused, naming the pattern and the reason
        assert reply["error"].startswith(("PatternError:", "PatternTooCostly:"))
        assert repr(pattern) in reply["error"]


async def test_backreference_and_lookaround_are_typed_errors(long_lines: Workspace) -> None:
    registry = long_lines.registry()
    for pattern, words in [
        (r"(a)\1", "backreferences"),
        (r"foo(?=bar)", "lookarounds"),
        (r"(?<!x)a", "lookarounds"),
    ]:
        call = ToolCall(id="c", name="files.search", arguments=json.dumps({"pattern": pattern}))
        result = await registry.run_call(call)
        assert not result.ok
        assert result.error is not None
        assert result.error.startswith("PatternError:")
        assert repr(pattern) in result.error and words in result.error


def test_too_costly_patterns_are_refused_before_running() -> None:
    for pattern in [r"(.?){1000}c", r"a{1001}", r"((a{100}){100})"]:
        with pytest.raises(PatternTooCostly) as caught:
            compile_line_pattern(pattern)
        assert caught.value.pattern == pattern
    with pytest.raises(PatternError, match="at most 500"):
        compile_line_pattern("x" * 501)
    with pytest.raises(PatternError, match="empty"):
        compile_line_pattern("")


ORDINARY = [
    r"def \w+\(",
    r"^import ",
    r"TODO|FIXME",
    r"[0-9]{3}-[0-9]{4}",
    r"(?i)hello",
    r"\bvalue\b",
    r"x = \d+$",
    r"^\s*#",
    r"(?P<name>[a-z]+)_id",
    r"colou?r",
    r"\.py$",
    r"a.c",
    r"[^a-z ]",
]


def test_ordinary_patterns_match_the_lines_python_re_matches(tmp_path: Path) -> None:
    lines = [
        "import os",
        "def main(argv):",
        "    x = 42",
        "# TODO: tidy",
        "Hello World",
        "call 555-1234 now",
        "the value is set",
        "values are many",
        "user_id = 7",
        "colour and color",
        "setup.py",
        "abc and a-c",
        "    # indented comment",
        "plain words only",
        "FIXME later",
    ]
    (tmp_path / "code.txt").write_text("\n".join(lines) + "\n")
    ws = Workspace(tmp_path)
    for pattern in ORDINARY:
        expected = [n for n, line in enumerate(lines, start=1) if re.search(pattern, line)]
        found = [m["line"] for m in ws.search(pattern)["matches"]]
        assert found == expected, pattern
    literal = ws.search("(", literal=True)["matches"]
    assert [m["line"] for m in literal] == [2]


def test_search_stops_at_its_time_limit(tmp_path: Path) -> None:
    for index in range(5):
        (tmp_path / f"f{index}.txt").write_text("match\n")
    found = Workspace(tmp_path, search_seconds=1e-9).search("match")
    assert found["timed_out"] and found["truncated"]
    assert found["files_searched"] < 5
    full = Workspace(tmp_path).search("match")
    assert full["files_searched"] == 5 and not full["timed_out"] and not full["truncated"]


def test_an_oversized_glob_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x\n")
    ws = Workspace(tmp_path)
    with pytest.raises(PatternError, match="a glob has 1 to 255 characters"):
        ws.search("x", glob="*" * 256)
    assert len(ws.search("x", glob="*.txt")["matches"]) == 1
