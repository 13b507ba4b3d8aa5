"""What the memory manager stores and returns: namespaces, items, hits, costs, policies."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from llmagentos.exceptions import MemoryInputError

__all__ = [
    "KINDS",
    "Cost",
    "Eviction",
    "Hit",
    "MemoryItem",
    "MemoryKind",
    "MemoryPolicy",
    "Namespace",
    "NewMemory",
    "SearchMode",
    "SearchResult",
    "WriteResult",
]

MemoryKind = Literal["episodic", "semantic", "skill"]
"""``episodic``: step records, episodes, conversations. ``semantic``: facts and passages
with metadata. ``skill``: lessons, successful plans, learned values."""
KINDS: tuple[MemoryKind, ...] = get_args(MemoryKind)

SearchMode = Literal["lexical", "vector", "hybrid"]
Eviction = Literal["lru", "fifo"]

# Namespace parts are identifiers, never paths or SQL: they are compared byte for byte.
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


def _check_part(field_name: str, value: object) -> str:
    if not isinstance(value, str) or not _PART.fullmatch(value):
        raise MemoryInputError(
            field_name,
            f"must be 1-128 characters of letters, digits and . _ : @ -, starting with a "
            f"letter or digit (got {value!r})",
        )
    return value


@dataclass(frozen=True, slots=True)
class Namespace:
    """Where an item lives: tenant → agent → kind. Stores never cross one.

    ``agent`` names the owner: an agent, or a collection that agents are given
    (a search index, a shared knowledge base).
    """

    tenant: str
    agent: str
    kind: MemoryKind

    def __post_init__(self) -> None:
        _check_part("tenant", self.tenant)
        _check_part("agent", self.agent)
        if self.kind not in KINDS:
            raise MemoryInputError("kind", f"must be one of {', '.join(KINDS)} (got {self.kind!r})")

    def __str__(self) -> str:
        return f"{self.tenant}/{self.agent}/{self.kind}"


@dataclass(slots=True)
class NewMemory:
    """An item to write. ``key`` (optional) makes the write idempotent: writing the same
    key again in the namespace replaces the item instead of adding a second one."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    ttl: float | None = None
    embedding: list[float] | None = None  # given by the caller instead of computed


@dataclass(slots=True)
class MemoryItem:
    """A stored item. Times are Unix seconds; ``expires_at`` is ``None`` for no TTL."""

    id: str
    namespace: Namespace
    text: str
    metadata: dict[str, Any]
    key: str | None
    created_at: float
    updated_at: float
    expires_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view (the wire form of the memory service)."""
        return {
            "id": self.id,
            "namespace": str(self.namespace),
            "text": self.text,
            "metadata": self.metadata,
            "key": self.key,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
        }


@dataclass(slots=True)
class Cost:
    """What a call cost: wall time, and the embedding or model work it did."""

    seconds: float = 0.0
    embedded_texts: int = 0
    embedding_tokens: int = 0
    model_tokens: int = 0
    cached_embeddings: int = 0

    def add(self, other: Cost) -> None:
        self.seconds += other.seconds
        self.embedded_texts += other.embedded_texts
        self.embedding_tokens += other.embedding_tokens
        self.model_tokens += other.model_tokens
        self.cached_embeddings += other.cached_embeddings


@dataclass(slots=True)
class Hit:
    """One search result. ``score`` orders the hits (higher is better); the ranks say
    where the item stood in each list that was fused (``None``: not in that list)."""

    item: MemoryItem
    score: float
    lexical_rank: int | None = None
    vector_rank: int | None = None


@dataclass(slots=True)
class SearchResult:
    """The hits of a search, best first, and what the search cost."""

    hits: list[Hit]
    mode: SearchMode
    cost: Cost

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def items(self) -> list[MemoryItem]:
        return [hit.item for hit in self.hits]


@dataclass(slots=True)
class WriteResult:
    """The ids written (in input order), how many items were evicted to make room, and
    what the write cost."""

    ids: list[str]
    cost: Cost
    evicted: int = 0


@dataclass(frozen=True, slots=True)
class MemoryPolicy:
    """Limits of a namespace: a default TTL (seconds; ``None`` keeps items until deleted)
    and a size limit, kept by evicting the least recently used (``lru``) or the oldest
    (``fifo``) items after each write."""

    ttl: float | None = None
    max_items: int | None = None
    eviction: Eviction = "lru"

    def __post_init__(self) -> None:
        if self.ttl is not None and not (self.ttl > 0 and math.isfinite(self.ttl)):
            raise MemoryInputError(
                "ttl", f"must be a positive number of seconds (got {self.ttl!r})"
            )
        if self.max_items is not None and (
            isinstance(self.max_items, bool)
            or not isinstance(self.max_items, int)
            or self.max_items < 1
        ):
            raise MemoryInputError(
                "max_items", f"must be a positive integer (got {self.max_items!r})"
            )
        if self.eviction not in ("lru", "fifo"):
            raise MemoryInputError("eviction", f"must be 'lru' or 'fifo' (got {self.eviction!r})")
