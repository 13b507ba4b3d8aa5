"""Pull the code out of a model's reply: fenced blocks, bare code, stray prose and demos.

Small models wrap code in markdown fences (or forget to close them when they run out of
tokens), add prose before and after, and append "example usage" calls at the top level
that run, and may crash, when the tests import the solution. :func:`extract_code` keeps
the code that defines the function and drops the rest.
"""

from __future__ import annotations

import ast
import re

__all__ = ["extract_code", "strip_top_level_calls"]

# An opening fence with an optional language tag, then everything up to a closing fence
# or the end of the text (a reply cut off by max_tokens never closes its fence).
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)",
                    re.DOTALL | re.MULTILINE)  # fmt: skip
_CODE_START = re.compile(r"^(?:def |async def |class |import |from |@)", re.MULTILINE)
_NON_PYTHON = frozenset({"text", "console", "bash", "sh", "shell", "output", "json"})


def _blocks(text: str) -> list[str]:
    return [
        match.group(3)
        for match in _FENCE.finditer(text)
        if match.group(2).lower() not in _NON_PYTHON
    ]


def _defines(code: str, name: str) -> bool:
    return (
        re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    )


def _from_prose(text: str) -> str:
    """Unfenced code: from the first line that starts a definition or an import."""
    match = _CODE_START.search(text)
    return text[match.start() :] if match else text


def _trim_to_parsable(code: str) -> str:
    """Drop trailing lines until the code parses (prose after unfenced code)."""
    lines = code.rstrip().splitlines()
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        try:
            ast.parse(candidate)
        except SyntaxError:
            continue
        return candidate + "\n"
    return code


def strip_top_level_calls(code: str) -> str:
    """Remove top-level demo statements (calls, prints, asserts, ``if __name__``).

    Definitions, imports and assignments stay. Code that does not parse is returned as
    it is: the test run will report the syntax error, which a repair can fix.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    drop: list[tuple[int, int]] = []
    for node in tree.body:
        is_demo = isinstance(node, (ast.Expr, ast.Assert)) and not (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        )
        is_main = isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)
        is_loop = isinstance(node, (ast.For, ast.While))
        if is_demo or is_main or is_loop:
            drop.append((node.lineno, node.end_lineno or node.lineno))
    if not drop:
        return code
    lines = code.splitlines()
    keep = [
        line
        for number, line in enumerate(lines, start=1)
        if not any(first <= number <= last for first, last in drop)
    ]
    return "\n".join(keep).rstrip() + "\n"


def extract_code(reply: str, entry_point: str | None = None) -> str:
    """The Python code in ``reply``.

    Prefers a fenced block that defines ``entry_point`` (else the longest Python block);
    without fences, takes the text from the first ``def``/``import`` line and trims
    trailing prose. Top-level demo calls are removed.
    """
    text = reply.replace("\r\n", "\n")
    blocks = _blocks(text)
    if blocks:
        defining = [b for b in blocks if entry_point and _defines(b, entry_point)]
        # Helpers and imports may sit in other blocks: join every block when the
        # defining one alone is not the whole story and the join still parses.
        code = defining[0] if defining else max(blocks, key=len)
        if len(blocks) > 1 and defining:
            joined = "\n\n".join(b.strip("\n") for b in blocks)
            try:
                ast.parse(joined)
            except SyntaxError:
                joined = ""
            if joined:
                code = joined
    else:
        code = _trim_to_parsable(_from_prose(text))
    return strip_top_level_calls(code.strip("\n") + "\n")
