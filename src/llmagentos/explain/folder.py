"""A run's output folder as data, read defensively: what ``explain`` and the dashboard show.

A folder may hold a finished run (``results.json``), a run still going (``status.json``
with a live process), a run whose process died, a durable run waiting for approval
(``run.db``), or files that are not what they should be. :func:`open_run` never
raises for what it finds inside: every file that cannot be read becomes a line in
``problems`` and the state says what is known (``broken`` when nothing is).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmagentos._processes import process_alive
from llmagentos.exceptions import LLMAgentOSError, RunLookupError

__all__ = ["RunFolder", "find_runs", "open_run"]

RESULTS, STATUS, TRACE, PARTIAL_TRACE = (
    "results.json", "status.json", "trace.jsonl", ".trace.jsonl.partial",
)  # fmt: skip
SPANS, JOURNAL, QTABLE, PLOT = "spans.jsonl", "run.db", "qtable.json", "learning_curve.png"
_MARKERS = (RESULTS, STATUS, JOURNAL, TRACE)


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        problems.append(f"{path.name} cannot be read: {err}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} is not a JSON object")
        return None
    return data


@dataclass(slots=True)
class RunFolder:
    """What a run folder holds.

    Attributes:
        path: the folder.
        state: ``completed``, ``running``, ``paused``, ``budget_exceeded``,
            ``interrupted``, ``failed``, ``died`` (its process is gone without results),
            ``broken`` (nothing readable) or a durable journal's own state.
        results: ``results.json``, or the partial result in ``status.json`` while running.
        status: ``status.json`` as written last.
        problems: every file that could not be read, and why.
    """

    path: Path
    state: str = "broken"
    results: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        results = self.results or {}
        name = results.get("name")
        return name if isinstance(name, str) else self.path.name

    @property
    def config(self) -> dict[str, Any] | None:
        config = (self.results or {}).get("config")
        return config if isinstance(config, dict) else None

    @property
    def live(self) -> bool:
        return self.state == "running"

    @property
    def kernel(self) -> dict[str, Any] | None:
        """The kernel's counters as of the last status write."""
        kernel = (self.status or {}).get("kernel")
        return kernel if isinstance(kernel, dict) else None

    def file(self, name: str) -> Path | None:
        path = self.path / name
        return path if path.is_file() else None

    @property
    def trace_file(self) -> Path | None:
        """The step trace: the finished one, or the one a running run is writing."""
        return self.file(TRACE) or self.file(PARTIAL_TRACE)

    def phase(self, name: str) -> dict[str, Any] | None:
        """``train``, ``eval``, ``baseline train`` or ``baseline eval`` from the results."""
        results = self.results or {}
        if name.startswith("baseline "):
            results = results.get("baseline") or {}
            name = name.removeprefix("baseline ")
        phase = results.get(name)
        return phase if isinstance(phase, dict) else None

    # -- steps ----------------------------------------------------------------------------

    def steps(self, episode: int | None = None) -> Iterator[dict[str, Any]]:
        """Step records (trace lines, else the durable journal's), of one episode or all.

        A line that is not a record (a torn last line while the run writes) is skipped.
        """
        trace = self.trace_file
        if trace is not None:
            yield from _trace_lines(trace, episode)
            return
        yield from self._journal_steps(episode)

    def _journal_steps(self, episode: int | None) -> Iterator[dict[str, Any]]:
        path = self.file(JOURNAL)
        if path is None:
            return
        from llmagentos.durable.journal import Journal

        try:
            with Journal(path, create=False) as journal:
                records = list(journal.steps())
        except LLMAgentOSError as err:
            self.problems.append(f"{JOURNAL} cannot be read: {err}")
            return
        for record in records:
            if episode is None or record.get("episode") == episode:
                yield record

    def episodes(self) -> list[dict[str, Any]]:
        """Each traced episode: index, training or not, steps, return, how it ended."""
        trace = self.trace_file
        if trace is not None:
            episodes: list[dict[str, Any]] = _EPISODES.read(trace)
            return episodes
        found: dict[int, dict[str, Any]] = {}
        for record in self._journal_steps(None):
            _count(found, record)
        return [found[k] for k in sorted(found)]

    def step(self, episode: int, step: int) -> dict[str, Any]:
        """One step's record.

        Raises:
            RunLookupError: the episode was not traced, or has no such step; the error
                names what is there.
        """
        records = list(self.steps(episode))
        if not records:
            traced = [e["episode"] for e in self.episodes()]
            raise RunLookupError("episode", f"episode {episode} is not traced in {self.path} "
                                 f"({_ranges(traced) or 'no episode is traced'})")  # fmt: skip
        for record in records:
            if record.get("step") == step:
                return record
        raise RunLookupError(
            "step", f"episode {episode} has steps 0 to {len(records) - 1} (asked for {step})"
        )

    def spans(self) -> list[dict[str, Any]]:
        """The run's spans (``spans.jsonl``), read on from where the last read stopped."""
        path = self.file(SPANS)
        spans: list[dict[str, Any]] = [] if path is None else _SPANS.read(path)
        return spans


def _count(found: dict[int, dict[str, Any]], record: dict[str, Any]) -> None:
    index = record.get("episode")
    if not isinstance(index, int):
        return
    item = found.get(index)
    if item is None:
        item = found[index] = {"episode": index, "training": record.get("training", True),
                               "steps": 0, "return": 0.0, "end": "running"}  # fmt: skip
    item["steps"] += 1
    reward = record.get("reward")
    if isinstance(reward, int | float):
        item["return"] += reward
    if record.get("terminated"):
        item["end"] = "terminated"
    elif record.get("truncated"):
        item["end"] = "truncated"


class _Tail:
    """What a JSON Lines file holds, read on from where the last read stopped: a page
    that refreshes every two seconds next to a long run reads only the new lines.

    ``fold(state, record)`` adds one record to the kept state; a file replaced or cut
    (a new inode, a smaller size) is read again from its start.
    """

    def __init__(self, fold: Any, view: Any) -> None:
        self._fold, self._view = fold, view
        self._lock = threading.Lock()
        self._files: dict[Path, tuple[int, int, Any]] = {}

    def read(self, path: Path) -> Any:
        with self._lock:  # one reader at a time per process: the state is shared
            try:
                stat = path.stat()
            except OSError:
                return self._view(None)
            inode, offset, state = self._files.get(path, (stat.st_ino, 0, None))
            if inode != stat.st_ino or stat.st_size < offset:
                offset, state = 0, None
            try:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    for line in handle:
                        if not line.endswith(b"\n"):
                            break  # a line being written: read it next time
                        offset += len(line)
                        try:
                            record = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(record, dict):
                            state = self._fold(state, record)
            except OSError:
                return self._view(state)
            self._files[path] = (stat.st_ino, offset, state)
            return self._view(state)


def _fold_episode(state: dict[int, dict[str, Any]] | None, record: dict[str, Any]) -> Any:
    state = {} if state is None else state
    _count(state, record)
    return state


def _fold_span(state: list[dict[str, Any]] | None, record: dict[str, Any]) -> Any:
    state = [] if state is None else state
    if "span_id" in record:
        state.append(record)
    return state


_EPISODES = _Tail(_fold_episode, lambda s: [dict(s[k]) for k in sorted(s or {})])
_SPANS = _Tail(_fold_span, lambda s: list(s or []))


def _trace_lines(path: Path, episode: int | None) -> Iterator[dict[str, Any]]:
    # A cheap textual filter first: most lines of a long trace are other episodes'.
    needle = None if episode is None else f'"episode":{episode},'
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if needle is not None and needle not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and (
                    episode is None or record.get("episode") == episode
                ):
                    yield record
    except OSError:
        return


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``"0-2, 5"``."""
    parts: list[str] = []
    start = previous = None
    for value in [*values, None]:
        if value is not None and previous is not None and value == previous + 1:
            previous = value
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = value
    return ", ".join(parts)


def _state(run: RunFolder) -> str:
    results, status = run.results, run.status
    if status is not None and status.get("state") == "running":
        pid = status.get("pid")
        here = status.get("host") in (None, socket.gethostname())
        if isinstance(pid, int) and (not here or process_alive(pid)):
            return "running"
        written = run.path / RESULTS
        if not written.is_file() or status.get("updated", 0) > written.stat().st_mtime:
            run.problems.append(f"the run's process ({pid}) is gone without finishing")
            return "died"
    if results is not None and (run.path / RESULTS).is_file():
        stopped = results.get("stopped")
        if isinstance(stopped, str):
            return stopped.split(":", 1)[0]
        if results.get("interrupted"):
            return "interrupted"
        return "failed" if results.get("error") else "completed"
    if status is not None and isinstance(status.get("state"), str):
        return str(status["state"])
    return "broken"


def open_run(path: str | os.PathLike[str]) -> RunFolder:
    """Read the run in ``path``.

    Raises:
        RunLookupError: ``path`` is not a folder (anything wrong inside is reported in
            the result's ``problems`` instead).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise RunLookupError("run", f"{folder} is not a folder")
    run = RunFolder(folder)
    run.status = _read_json(folder / STATUS, run.problems)
    run.results = _read_json(folder / RESULTS, run.problems)
    if run.results is None and run.status is not None:
        partial = run.status.get("result")
        run.results = partial if isinstance(partial, dict) else None
    try:
        run.state = _state(run)
    except (OSError, TypeError, ValueError) as err:  # files changing under us, odd values
        run.problems.append(f"the run's state cannot be told: {err}")
        run.state = "broken"
    if run.state == "broken" and (folder / JOURNAL).is_file():
        run.state = _journal_state(folder / JOURNAL, run.problems)
    if run.state == "broken" and not run.problems:
        run.problems.append("no results.json, status.json, run.db or trace.jsonl here")
    return run


def _journal_state(path: Path, problems: list[str]) -> str:
    from llmagentos.durable.journal import Journal

    try:
        with Journal(path, create=False) as journal:
            return journal.status().state
    except LLMAgentOSError as err:
        problems.append(f"{JOURNAL} cannot be read: {err}")
        return "broken"


def find_runs(root: str | os.PathLike[str], *, depth: int = 3) -> list[RunFolder]:
    """The runs under ``root`` (itself included), ``depth`` folders deep, newest first.

    A folder counts as a run if it holds any of ``results.json``, ``status.json``,
    ``run.db`` or ``trace.jsonl`` (even unreadable).

    Raises:
        RunLookupError: ``root`` is not a folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise RunLookupError("run", f"{base} is not a folder")
    found: list[Path] = []
    level = [base]
    for _ in range(depth + 1):
        following: list[Path] = []
        for folder in level:
            if any((folder / marker).exists() for marker in _MARKERS):
                found.append(folder)
            try:
                following += sorted(
                    p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                )
            except OSError:
                continue
        level = following
    return sorted((_open_listed(p) for p in found), key=_updated, reverse=True)


def _open_listed(path: Path) -> RunFolder:
    try:
        return open_run(path)
    except Exception as err:  # one unreadable folder must not hide the others
        return RunFolder(path, "broken", problems=[f"this folder cannot be read: {err!r}"])


def _updated(run: RunFolder) -> float:
    try:
        return max((run.path / m).stat().st_mtime for m in _MARKERS if (run.path / m).exists())
    except (OSError, ValueError):
        return 0.0
