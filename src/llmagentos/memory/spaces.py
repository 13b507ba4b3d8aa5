"""Bound views of the manager: one namespace (:class:`MemorySpace`), or an agent's three
(:class:`AgentMemory`). Modules hold these; they take the manager's calls without the
namespace argument and are as thread-safe as the manager."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmagentos.exceptions import MemoryInputError
from llmagentos.memory.types import (
    KINDS,
    MemoryItem,
    MemoryKind,
    MemoryPolicy,
    Namespace,
    SearchResult,
    WriteResult,
)

if TYPE_CHECKING:
    from llmagentos.memory.distill import Distiller
    from llmagentos.memory.manager import MemoryManager

__all__ = ["AgentMemory", "MemorySpace"]


class MemorySpace:
    """One namespace, bound: the manager's calls without the namespace argument."""

    def __init__(self, manager: MemoryManager, namespace: Namespace) -> None:
        self.manager = manager
        self.namespace = namespace

    def put(self, items: Any, *, distill: Distiller | None = None) -> WriteResult:
        return self.manager.put(self.namespace, items, distill=distill)

    def get(self, item_id: str) -> MemoryItem:
        return self.manager.get(self.namespace, item_id)

    def get_by_key(self, key: str) -> MemoryItem:
        return self.manager.get_by_key(self.namespace, key)

    def update(self, item_id: str, **changes: Any) -> MemoryItem:
        return self.manager.update(self.namespace, item_id, **changes)

    def delete(self, ids: str | Sequence[str]) -> int:
        return self.manager.delete(self.namespace, ids)

    def search(self, query: str, **options: Any) -> SearchResult:
        return self.manager.search(self.namespace, query, **options)

    def list(self, **options: Any) -> list[MemoryItem]:
        return self.manager.list(self.namespace, **options)

    def count(self) -> int:
        return self.manager.count(self.namespace)

    async def aput(self, items: Any, *, distill: Distiller | None = None) -> WriteResult:
        return await self.manager.aput(self.namespace, items, distill=distill)

    async def aget(self, item_id: str) -> MemoryItem:
        return await self.manager.aget(self.namespace, item_id)

    async def asearch(self, query: str, **options: Any) -> SearchResult:
        return await self.manager.asearch(self.namespace, query, **options)

    async def aupdate(self, item_id: str, **changes: Any) -> MemoryItem:
        return await self.manager.aupdate(self.namespace, item_id, **changes)

    async def adelete(self, ids: str | Sequence[str]) -> int:
        return await self.manager.adelete(self.namespace, ids)

    def __repr__(self) -> str:
        return f"MemorySpace({self.namespace})"


class AgentMemory:
    """An agent's memory: ``episodic``, ``semantic`` and ``skills`` spaces of one tenant."""

    def __init__(
        self, manager: MemoryManager, tenant: str, agent: str, *, policy: MemoryPolicy | None = None
    ) -> None:
        self.manager, self.tenant, self.agent = manager, tenant, agent
        spaces = {
            kind: MemorySpace(manager, manager.namespace(tenant, agent, kind, policy=policy))
            for kind in KINDS
        }
        self.episodic = spaces["episodic"]
        self.semantic = spaces["semantic"]
        self.skills = spaces["skill"]

    def space(self, kind: MemoryKind) -> MemorySpace:
        """The space of ``kind`` (``episodic``, ``semantic`` or ``skill``)."""
        if kind not in KINDS:
            raise MemoryInputError("kind", f"must be one of {', '.join(KINDS)} (got {kind!r})")
        return {"episodic": self.episodic, "semantic": self.semantic, "skill": self.skills}[kind]

    def __repr__(self) -> str:
        return f"AgentMemory({self.tenant}/{self.agent})"
