"""The code-generation task set: small Python functions with tests, shipped as package data.

Each task is a function to write: ``prompt`` is its signature and docstring (with an
example), ``tests`` a module of ``def test_*():`` functions that does
``from solution import *``, and ``solution`` a reference implementation. The built-in
set lives in ``tasks/*.toml`` next to this file; :func:`load_tasks` also reads a TOML
file of the same shape.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from llmagentos.exceptions import ConfigError

__all__ = ["CodeTask", "builtin_tasks", "load_tasks", "select_tasks"]

_FIELDS = ("id", "entry_point", "prompt", "tests", "solution")


@dataclass(frozen=True, slots=True)
class CodeTask:
    """One function to write.

    Attributes:
        id: a short unique name (``reverse_words``).
        entry_point: the function's name.
        prompt: the signature and docstring the model is shown.
        tests: the test module (``from solution import *`` then ``def test_*():``).
        solution: a reference solution that passes ``tests``.
    """

    id: str
    entry_point: str
    prompt: str
    tests: str
    solution: str

    @property
    def signature(self) -> str:
        """The ``def ...:`` line of the prompt."""
        for line in self.prompt.splitlines():
            if line.lstrip().startswith("def "):
                return line.strip()
        return f"def {self.entry_point}(...):"

    def to_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in _FIELDS}


def _task(raw: Any, where: str) -> CodeTask:
    if not isinstance(raw, dict):
        raise ConfigError(where, "each [[task]] must be a table")
    missing = [name for name in _FIELDS if not isinstance(raw.get(name), str) or not raw[name]]
    if missing:
        raise ConfigError(where, f"missing or empty field(s): {', '.join(missing)}")
    return CodeTask(
        id=raw["id"],
        entry_point=raw["entry_point"],
        prompt=raw["prompt"].strip("\n") + "\n",
        tests=raw["tests"].strip("\n") + "\n",
        solution=raw["solution"].strip("\n") + "\n",
    )


def _parse(text: str, source: str) -> list[CodeTask]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, f"not valid TOML: {err}") from err
    raw_tasks = data.get("task")
    if not isinstance(raw_tasks, list):
        raise ConfigError(source, "expected [[task]] tables")
    return [_task(raw, f"{source}: task {i}") for i, raw in enumerate(raw_tasks)]


def _unique(tasks: Iterable[CodeTask]) -> list[CodeTask]:
    result: list[CodeTask] = []
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise ConfigError("tasks", f"duplicate task id {task.id!r}")
        seen.add(task.id)
        result.append(task)
    return result


def builtin_tasks() -> list[CodeTask]:
    """The bundled task set, in file order."""
    folder = resources.files("llmagentos.codegen").joinpath("tasks")
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".toml")),
        key=lambda entry: entry.name,
    )
    return _unique(task for entry in files for task in _parse(entry.read_text("utf-8"), entry.name))


def load_tasks(path: str | Path | None = None) -> list[CodeTask]:
    """The tasks of a TOML file of ``[[task]]`` tables, or the bundled set for ``None``."""
    if path is None:
        return builtin_tasks()
    file = Path(path)
    try:
        text = file.read_text("utf-8")
    except OSError as err:
        raise ConfigError("tasks", f"cannot read {file}: {err.strerror or err}") from err
    return _unique(_parse(text, str(file)))


def select_tasks(tasks: Sequence[CodeTask], ids: str | Sequence[str] | None) -> list[CodeTask]:
    """The tasks named by ``ids`` (comma-separated text or a list; ``"all"``/``None``: all).

    Raises:
        ConfigError: an id is not in ``tasks`` (close matches are suggested).
    """
    if ids is None or ids == "all":
        return list(tasks)
    wanted = [i.strip() for i in ids.split(",")] if isinstance(ids, str) else list(ids)
    wanted = [i for i in wanted if i]
    if not wanted:
        raise ConfigError("tasks", "no task ids given")
    by_id = {task.id: task for task in tasks}
    unknown = [i for i in wanted if i not in by_id]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(by_id), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError("tasks", f"unknown task id {unknown[0]!r}{hint}")
    return [by_id[i] for i in dict.fromkeys(wanted)]
