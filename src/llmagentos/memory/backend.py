"""The contract every memory store implements (SQLite here, Postgres for many machines).

A backend stores items per :class:`~llmagentos.memory.types.Namespace` and answers the
two retrieval primitives, lexical and vector, each within one namespace; rank fusion,
embedding and accounting happen above it, in the manager, identically for every
backend. Every method takes the namespace and every query the backend runs is bound to
it: isolation is the store's, not the caller's, business.

The conformance suite (``tests/memory/test_backend_contract.py``) holds each backend to
the same observable behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from llmagentos.embeddings import Vectors
from llmagentos.memory.filters import Filter
from llmagentos.memory.types import MemoryItem, MemoryPolicy, Namespace

__all__ = ["MemoryBackend", "NamespaceInfo", "Row"]


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """What a namespace holds: its embedder (``None``: lexical only) and its limits."""

    namespace: Namespace
    embedder: str | None
    dimension: int | None
    policy: MemoryPolicy


@dataclass(slots=True)
class Row:
    """One item to write, its vector already computed (``None`` for lexical only)."""

    id: str
    text: str
    metadata: dict[str, Any]
    key: str | None
    expires_at: float | None
    vector: Vectors | None


@runtime_checkable
class MemoryBackend(Protocol):
    """A store of namespaced items with lexical and vector search (blocking calls)."""

    name: str

    def create_namespace(self, info: NamespaceInfo) -> NamespaceInfo:
        """Create the namespace, or return the existing one's info unchanged."""
        ...

    def namespace(self, namespace: Namespace) -> NamespaceInfo | None:
        """The namespace's info, or ``None`` if it was never created."""
        ...

    def namespaces(self, tenant: str | None = None) -> list[NamespaceInfo]:
        """Every namespace (of ``tenant``, if given)."""
        ...

    def set_policy(self, namespace: Namespace, policy: MemoryPolicy) -> None: ...

    def write(self, namespace: Namespace, rows: Sequence[Row], now: float) -> tuple[list[str], int]:
        """Insert the rows in one transaction; a row whose ``key`` is already in the
        namespace replaces that item (keeping its id). Then evict past the size limit.
        Returns the ids in row order and how many items were evicted."""
        ...

    def get(self, namespace: Namespace, ids: Sequence[str], now: float) -> list[MemoryItem]:
        """The live items among ``ids`` (in the order asked; missing ones left out)."""
        ...

    def get_by_key(self, namespace: Namespace, key: str, now: float) -> MemoryItem | None: ...

    def update(
        self,
        namespace: Namespace,
        item_id: str,
        *,
        text: str | None,
        metadata: dict[str, Any] | None,
        expires_at: float | bool | None,
        vector: Vectors | None,
        now: float,
    ) -> MemoryItem | None:
        """Change one live item (``expires_at=False``: leave the TTL as it is); ``None``
        if there is no such live item."""
        ...

    def delete(self, namespace: Namespace, ids: Sequence[str]) -> list[str]:
        """Delete the items; returns the ids that existed."""
        ...

    def lexical(
        self, namespace: Namespace, query: str, k: int, where: Filter | None, now: float
    ) -> list[tuple[MemoryItem, float]]:
        """Full-text search: best first, higher scores better."""
        ...

    def vector(
        self, namespace: Namespace, query: Vectors, k: int, where: Filter | None, now: float
    ) -> list[tuple[MemoryItem, float]]:
        """Nearest items by cosine similarity, best first."""
        ...

    def list_items(
        self, namespace: Namespace, where: Filter | None, now: float, limit: int, offset: int
    ) -> list[MemoryItem]:
        """Items in creation order (newest first), filtered."""
        ...

    def count(self, namespace: Namespace, now: float) -> int: ...

    def purge_expired(self, now: float) -> int:
        """Delete every expired item; returns how many."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
