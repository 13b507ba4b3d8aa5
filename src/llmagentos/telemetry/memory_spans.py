"""Memory retrievals as GenAI ``retrieval`` spans: which namespace, which items came back.

The query text and the hits' texts are content: recorded only with ``record_content``.
The hits' ids and scores are always recorded, so the dashboard can show what a step
retrieved without showing what it says.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from llmagentos.telemetry.spans import set_attributes, span
from llmagentos.telemetry.state import TELEMETRY

if TYPE_CHECKING:
    from llmagentos.memory.types import Namespace, SearchMode, SearchResult

__all__ = ["traced_search"]


def traced_search(
    namespace: Namespace,
    query: str,
    k: int,
    mode: SearchMode,
    *,
    search: Callable[..., SearchResult],
    where: Mapping[str, Any] | None,
) -> SearchResult:
    """``search(namespace, query, k, mode, where)`` inside a ``retrieval {namespace}`` span."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "retrieval",
        "gen_ai.data_source.id": str(namespace),
        "llmagentos.memory.tenant": namespace.tenant,
        "llmagentos.memory.k": k,
        "llmagentos.memory.mode": mode,
    }
    if TELEMETRY.record_content:
        attributes["gen_ai.retrieval.query.text"] = query
    with span(f"retrieval {namespace}", attributes) as current:
        result = search(namespace, query, k, mode, where)
        hits = [{"id": hit.item.id, "score": round(hit.score, 6)} for hit in result.hits]
        if TELEMETRY.record_content:
            for shown, hit in zip(hits, result.hits, strict=True):
                shown["text"] = hit.item.text[:500]
        set_attributes(
            current,
            {
                "llmagentos.memory.hits": len(result.hits),
                "llmagentos.memory.mode_used": result.mode,
                "llmagentos.memory.seconds": result.cost.seconds,
                "gen_ai.retrieval.documents": json.dumps(hits, ensure_ascii=False),
            },
        )
        return result
