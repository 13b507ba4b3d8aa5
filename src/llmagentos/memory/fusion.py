"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009).

Each list votes ``1 / (k + rank)`` for each item it holds (ranks from 1). RRF needs no
score calibration between BM25 and cosine similarity, which live on unrelated scales,
and ``k = 60`` is the paper's constant, robust across collections.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmagentos.memory.types import Hit, MemoryItem

__all__ = ["RRF_K", "reciprocal_rank_fusion"]

RRF_K = 60


def reciprocal_rank_fusion(
    lexical: Sequence[tuple[MemoryItem, float]],
    vector: Sequence[tuple[MemoryItem, float]],
    k: int,
    *,
    constant: int = RRF_K,
) -> list[Hit]:
    """The top ``k`` of the two ranked lists, fused. Ties keep the lexical list's order,
    then the vector list's, so the result is deterministic."""
    hits: dict[str, Hit] = {}
    for rank, (item, _) in enumerate(lexical, start=1):
        hits[item.id] = Hit(item, 1.0 / (constant + rank), lexical_rank=rank)
    for rank, (item, _) in enumerate(vector, start=1):
        hit = hits.get(item.id)
        if hit is None:
            hits[item.id] = Hit(item, 1.0 / (constant + rank), vector_rank=rank)
        else:
            hit.score += 1.0 / (constant + rank)
            hit.vector_rank = rank
    order = {item_id: n for n, item_id in enumerate(hits)}
    ranked = sorted(hits.values(), key=lambda h: (-h.score, order[h.item.id]))
    return ranked[:k]
