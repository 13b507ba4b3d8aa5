"""A small hand-written collection in a fresh memory store, embedded by hashing (fast)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmagentos.memory import MemoryManager, Namespace
from llmagentos.qa.passages import SourcePassage, index_passages

PASSAGES = [
    SourcePassage("maze.md#0", "TextMaze — Layout\nThe TextMaze grid has 25 cells and one dock.",
                  "docs/maze.md", "TextMaze", "Layout"),
    SourcePassage("maze.md#1", "TextMaze — Rewards\nReaching the dock pays a reward of 10 points.",
                  "docs/maze.md", "TextMaze", "Rewards"),
    SourcePassage("kernel.md#0",
                  "Kernel — Scheduler\nThe scheduler runs at most 4 calls in flight per backend.",
                  "docs/kernel.md", "Kernel", "Scheduler"),
    SourcePassage("sandbox.md#0",
                  "Sandbox — Limits\nEach sandbox gets 256 megabytes of memory by default.",
                  "docs/sandbox.md", "Sandbox", "Limits"),
]  # fmt: skip


@pytest.fixture
def collection(tmp_path: Path) -> Iterator[tuple[MemoryManager, Namespace]]:
    memory = MemoryManager(tmp_path / "qa.db", embedder="hash:256")
    namespace = memory.namespace("t", "docs", "semantic")
    index_passages(memory, namespace, PASSAGES)
    yield memory, namespace
    memory.close()
