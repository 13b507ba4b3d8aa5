"""Every figure in README.md and CHANGELOG.md has the command that reproduces it beside it.

A figure is a measured-looking number: signed (``-16.4``), with a unit (``0.55 ms``,
``19%``, ``2 minutes``), a decimal (``7.88``) or a count (``8 of 10``); versions and
section numbers are not. "Beside it" means in the same paragraph or list item, as a
code span that runs something: ``python ...``, ``llmagentos ...``, ``pytest ...``,
``bash ...``, or a test file (``tests/...py``). Code blocks are left to
``tests/test_docs.py``, which runs them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", ROOT / "CHANGELOG.md"]

FIGURE = re.compile(
    r"(?<![\w.])(?<!Python )(?<!section )(?<!reaches )(?<!version )(?:"
    r"[-+]\d+(?:\.\d+)?"
    r"|\d+(?:\.\d+)?\s?(?:%|ms|us|s|x|KiB|MiB|GiB|tok/s|req/s|min|minutes|seconds)(?!\w)"
    r"|\d+\.\d+(?![.\d])"
    r"|\d+ of (?:the [\w' ]+ )?\d+"
    r")"
)
COMMAND = re.compile(r"`(?:(?:python|llmagentos|pytest|bash) [^`]+|tests/[\w/]+\.py[^`]*)`")


def units(text: str) -> Iterator[tuple[int, str]]:
    """Paragraphs, list items, headings and table rows outside code blocks, with lines."""
    inside, current, start = False, [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            inside = not inside
        new_unit = not stripped or stripped.startswith(("* ", "- ", "#", "|", "```", "~~~"))
        if new_unit and current:
            yield start, "\n".join(current)
            current = []
        if inside or not stripped or stripped.startswith(("```", "~~~")):
            continue
        if not current:
            start = number
        current.append(line)
    if current:
        yield start, "\n".join(current)


def figures_without_commands(path: Path) -> list[str]:
    problems = []
    for line, unit in units(path.read_text(encoding="utf-8")):
        prose = re.sub(r"\]\([^)]*\)", "]", re.sub(r"`[^`]*`", "", unit))  # no code, no links
        found = FIGURE.findall(prose)
        if found and not COMMAND.search(unit):
            problems.append(f"{path.name}:{line}: {', '.join(found)} with no command beside")
    return problems


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_figure_names_its_command(path: Path) -> None:
    assert figures_without_commands(path) == []


def test_a_figure_without_a_command_is_found(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "On Python 3.11, section 5.2.\n\n"
        "It adds 0.55 ms (`python bench/run.py --only gateway`).\n\n"
        "* The hybrid averages -16.4, better on 10 of 10 seeds.\n"
        "* 19% greedy (`llmagentos codegen --repairs 2`).\n\n"
        "```python\nprint(7.9)\n```\n"
    )
    assert figures_without_commands(doc) == ["doc.md:5: -16.4, 10 of 10 with no command beside"]
