"""Memory: namespaced, searchable stores every agent shares (docs/memory.md).

:class:`MemoryManager` is the kernel service; :class:`AgentMemory` an agent's three
kinds (episodic, semantic, skills); backends are SQLite (default) and Postgres.
"""

from __future__ import annotations

from llmagentos.memory.backend import MemoryBackend, NamespaceInfo
from llmagentos.memory.filters import matches, parse_filter
from llmagentos.memory.manager import AgentMemory, MemoryManager, MemorySpace, open_store
from llmagentos.memory.types import (
    KINDS,
    Cost,
    Hit,
    MemoryItem,
    MemoryKind,
    MemoryPolicy,
    Namespace,
    NewMemory,
    SearchMode,
    SearchResult,
    WriteResult,
)

__all__ = [
    "KINDS",
    "AgentMemory",
    "Cost",
    "Hit",
    "MemoryBackend",
    "MemoryItem",
    "MemoryKind",
    "MemoryManager",
    "MemoryPolicy",
    "MemorySpace",
    "Namespace",
    "NamespaceInfo",
    "NewMemory",
    "SearchMode",
    "SearchResult",
    "WriteResult",
    "matches",
    "open_store",
    "parse_filter",
]
