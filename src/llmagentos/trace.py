"""Write step records as JSON Lines: one line per step, flushed as it goes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from llmagentos.types import StepRecord

__all__ = ["TraceWriter", "read_trace"]


class TraceWriter:
    """An ``on_step`` listener that appends each :class:`StepRecord` to a JSONL file.

    Args:
        path: the file to write (parent folders are created).
        agent: the agent's name, written into every line.
        every: keep only episodes whose index is a multiple of ``every`` (1 keeps all).
        append: append to an existing file instead of replacing it.

    Example::

        with TraceWriter("trace.jsonl", agent="taxi") as trace:
            agent.listeners.append(trace)
            agent.run(10)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        agent: str = "agent",
        every: int = 1,
        append: bool = False,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1 (got {every})")
        self.path = Path(path)
        self.agent = agent
        self.every = every
        self.enabled = True
        self.lines = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("a" if append else "w", encoding="utf-8")

    def __call__(self, record: StepRecord) -> None:
        if not self.enabled or record.episode % self.every:
            return
        handle = self._file
        if handle is None:
            raise ValueError(f"trace {self.path} is closed")
        line = record.to_dict()
        line["agent"] = self.agent
        handle.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.lines += 1

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_trace(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSONL trace back as a list of dicts."""
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
