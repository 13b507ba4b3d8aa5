"""Pull the code out of a model's reply: fenced blocks, bare code, stray prose and demos.

Small models wrap code in markdown fences (or forget to close them when they run out of
tokens), add prose before and after, and append "example usage" calls at the top level
that run, and may crash, when the tests import the solution. :func:`extract_code` keeps
the code that defines the function and drops the rest.

They also answer with the function alone, dropping the prompt's ``from typing import
List`` (then ``NameError: name 'List' is not defined`` when the solution is imported)
and its helper functions, or with the body alone. :func:`with_prompt_context` puts
back what the prompt gave and the reply left out.
"""

from __future__ import annotations

import ast
import contextlib
import re

__all__ = ["extract_code", "strip_top_level_calls", "with_prompt_context"]

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


def _bound(tree: ast.Module) -> set[str]:
    """Top-level names a module binds (imports, definitions, assignments)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _binds(node: ast.stmt) -> set[str]:
    return _bound(ast.Module(body=[node], type_ignores=[]))


def with_prompt_context(code: str, prompt: str, entry_point: str | None = None) -> str:
    """``code`` with the prompt's imports and helpers that it lacks, put in front.

    * A reply that is only the function's body (it defines no ``entry_point`` and
      parses as the body of the prompt's function) becomes the prompt plus the body.
    * Otherwise each top-level import of the prompt whose names the code does not
      bind, and each helper the prompt defines (not ``entry_point``) that the code
      does not define, is prepended in the prompt's order; nothing is duplicated.

    Code without any of this, or a prompt that does not parse, is returned unchanged.
    """
    if not code.strip():
        return code
    try:
        prompt_tree = ast.parse(prompt)
    except SyntaxError:
        return code
    if entry_point and not _defines(code, entry_point) and code[:1].isspace():
        whole = prompt.rstrip("\n") + "\n" + code.strip("\n") + "\n"
        # A body that does not complete the prompt's signature is taken as code of its own.
        with contextlib.suppress(SyntaxError):
            ast.parse(whole)
            return whole
    try:
        have = _bound(ast.parse(code))
    except SyntaxError:
        have = set()  # the tests will report the error; the imports still help
    missing = []
    for node in prompt_tree.body:
        is_import = isinstance(node, ast.Import | ast.ImportFrom)
        is_helper = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        if is_helper and getattr(node, "name", None) == entry_point:
            continue
        if (is_import or is_helper) and not _binds(node) <= have:
            segment = ast.get_source_segment(prompt, node, padded=False)
            if segment:
                decorators = getattr(node, "decorator_list", [])
                if decorators:  # get_source_segment starts at the def, after them
                    first = min(d.lineno for d in decorators)
                    segment = "\n".join(prompt.splitlines()[first - 1 : node.end_lineno])
                missing.append(segment)
    if not missing:
        return code
    return "\n".join(missing) + "\n\n\n" + code.lstrip("\n")
