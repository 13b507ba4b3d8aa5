"""Re-ranking: a second look at a search's best candidates.

A :class:`Reranker` takes the query and the first search's hits and returns them
re-scored, best first (``SearchHit.rerank_score`` set). :class:`ModelReranker` asks a
language model, through the kernel, to grade each passage 0-10 for the query (pointwise,
one call per candidate, temperature 0); a cross-encoder or any other scorer plugs in
through the same protocol.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from llmagentos.search.engine import SearchHit

__all__ = ["ModelReranker", "Reranker"]

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
PROMPT = (
    "Query: {query}\n\nPassage ({source}{heading}):\n{text}\n\n"
    "How relevant is the passage to the query, from 0 (unrelated) to 10 (answers it)?"
    " Reply with the number only."
)


@runtime_checkable
class Reranker(Protocol):
    """Re-scores hits for a query; returns them best first."""

    def rerank(self, query: str, hits: Sequence[SearchHit]) -> list[SearchHit]: ...


class ModelReranker:
    """Grades each passage 0-10 with a language model (through the kernel).

    A reply without a number grades the passage -1: it goes below every graded one,
    keeping the first search's order among such passages (the sort is stable).

    Args:
        model: a model id (``local:smollm2``) or a :class:`~llmagentos.llm.base.Model`.
        agent: the kernel agent the calls are accounted to.
        max_chars: passage text beyond this is cut from the prompt.
    """

    def __init__(
        self, model: Any = "local:smollm2", *, agent: str = "search.rerank", max_chars: int = 1500
    ) -> None:
        from llmagentos.kernel.default import agent_model

        self.model = agent_model(model, agent=agent)
        self.max_chars = max_chars

    def grade(self, query: str, hit: SearchHit) -> float:
        heading = f", {hit.heading_path}" if hit.heading_path else ""
        prompt = PROMPT.format(
            query=query, source=hit.source, heading=heading, text=hit.text[: self.max_chars]
        )
        reply = self.model.chat(prompt, temperature=0.0, max_tokens=4).text or ""
        match = _NUMBER.search(reply)
        return min(float(match.group()), 10.0) if match else -1.0

    def rerank(self, query: str, hits: Sequence[SearchHit]) -> list[SearchHit]:
        graded = [dataclasses.replace(hit, rerank_score=self.grade(query, hit)) for hit in hits]
        return sorted(graded, key=lambda hit: -(hit.rerank_score or 0.0))
