"""Search patterns that cannot stall: Google RE2, whose matching time is linear in the text.

A model writes the patterns ``files.search`` runs, so a backtracking engine (Python's
``re``) is the wrong tool: ``(a+)+$`` over a line of thirty ``a`` takes seconds and
holds the GIL all along, stopping every other agent's event loop. RE2 (the
``google-re2`` package, a wheel with no dependencies) compiles a pattern to an
automaton and never backtracks; it also releases the GIL while it matches.

Its limits, which callers see as :class:`~llmagentos.exceptions.PatternError` naming
the pattern: no backreferences (``\\1``, ``(?P=name)``), no lookarounds (``(?=``,
``(?<!``), no possessive or atomic groups, no ``(?x)`` verbose mode, repetition counts
of at most 1000. ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII-only (use ``\\pL``,
``\\pN`` for Unicode letters and digits). A pattern whose program exceeds
:data:`MAX_PROGRAM_SIZE` instructions is :class:`~llmagentos.exceptions.PatternTooCostly`:
matching cost grows with program size times line length, and a few such patterns
(``(.?){1000}``) would otherwise take a tenth of a second per line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

from llmagentos.exceptions import PatternError, PatternTooCostly

__all__ = ["MAX_PATTERN_CHARS", "MAX_PROGRAM_SIZE", "LineMatcher", "compile_line_pattern"]

#: The longest pattern accepted, in characters.
MAX_PATTERN_CHARS = 500
#: The largest compiled program accepted, in RE2 instructions (ordinary patterns use tens;
#: ``\pL+`` about 1200). At this size a 2000-character line costs at most ~0.1 s.
MAX_PROGRAM_SIZE = 5000
#: RE2's memory budget for one pattern (its DFA cache included), in bytes.
_MAX_MEM = 8 << 20

#: ``matcher(line) -> bool``: whether the line holds a match.
LineMatcher = Callable[[str], bool]

# RE2 reports these when a pattern is over its size limits, not malformed.
_TOO_LARGE = ("pattern too large", "invalid repetition size")


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.max_mem = _MAX_MEM
    return options


def compile_line_pattern(pattern: str, *, literal: bool = False) -> LineMatcher:
    """A function telling whether a line contains ``pattern`` (RE2 syntax, or plain text).

    Raises:
        PatternError: the pattern is empty, too long, malformed, or uses a feature RE2
            lacks (backreferences, lookarounds).
        PatternTooCostly: the pattern compiles to more than :data:`MAX_PROGRAM_SIZE`
            instructions, or past RE2's size limits.
    """
    if not isinstance(pattern, str) or not pattern:
        raise PatternError(str(pattern), "the pattern is empty")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(
            pattern, f"it has {len(pattern)} characters; at most {MAX_PATTERN_CHARS}"
        )
    if literal:
        # Substring search is linear too, and exactly what re.escape() matched before.
        return lambda line: pattern in line
    try:
        compiled = re2.compile(pattern, _options())
    except re2.error as err:
        detail = err.args[0] if err.args else err
        message = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        if any(marker in message for marker in _TOO_LARGE):
            raise PatternTooCostly(pattern, f"too costly to run ({message})") from None
        raise PatternError(
            pattern,
            f"{message} (patterns use RE2 syntax: no backreferences, no lookarounds; "
            "or search with literal=true)",
        ) from None
    size = int(compiled.programsize)
    if size > MAX_PROGRAM_SIZE:
        raise PatternTooCostly(
            pattern,
            f"too costly to run: it compiles to {size} instructions "
            f"(at most {MAX_PROGRAM_SIZE}); use fewer or smaller repetitions",
        )
    search = compiled.search
    return lambda line: search(line) is not None
