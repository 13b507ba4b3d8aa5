"""Perception for question answering: the question's passages from a memory namespace."""

from __future__ import annotations

from typing import Any

from llmagentos.exceptions import ConfigError, MemoryInputError
from llmagentos.memory import MemoryManager, Namespace, SearchMode, SearchResult
from llmagentos.modules.perception import PerceptionModule
from llmagentos.qa.passages import Passage
from llmagentos.qa.text import coverage
from llmagentos.qa.types import Retrieved

__all__ = ["RetrievalPerception", "passages_of"]


def passages_of(result: SearchResult) -> tuple[Passage, ...]:
    """Search hits as numbered passages (metadata ``path``, ``title``, ``heading``)."""
    out = []
    for number, hit in enumerate(result.hits, start=1):
        meta: dict[str, Any] = hit.item.metadata or {}
        out.append(
            Passage(
                number,
                hit.item.id,
                hit.item.key,
                hit.item.text,
                str(meta.get("path", hit.item.key or hit.item.id)),
                str(meta.get("title", "")),
                str(meta.get("heading", "")),
                float(hit.score),
            )
        )
    return tuple(out)


class RetrievalPerception(PerceptionModule):
    """Observes a question (a string); perceives its ``k`` best passages.

    The answer execution hands back (a dict) is perceived as itself: the agent perceives
    each step's next observation, and an answer needs no search.

    Args:
        memory: the memory manager holding the collection.
        namespace: the collection's namespace.
        k: passages retrieved per question.
        mode: ``hybrid`` (lexical and vector, fused), ``lexical`` or ``vector``.
    """

    def __init__(
        self,
        memory: MemoryManager,
        namespace: Namespace,
        *,
        k: int = 5,
        mode: SearchMode = "hybrid",
    ) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 50:
            raise ConfigError("k", f"must be an integer from 1 to 50 (got {k!r})")
        if mode not in ("hybrid", "lexical", "vector"):
            raise ConfigError("mode", f"must be hybrid, lexical or vector (got {mode!r})")
        self.memory, self.namespace, self.k, self.mode = memory, namespace, k, mode

    @staticmethod
    def _question(observation: Any) -> str:
        if not isinstance(observation, str) or not observation.strip():
            raise MemoryInputError("question", f"must be a non-empty string (got {observation!r})")
        return " ".join(observation.split())

    def _features(self, question: str, result: SearchResult) -> Retrieved:
        passages = passages_of(result)
        return Retrieved(
            question, passages, coverage(question, [p.text for p in passages]), result.mode
        )

    def perceive(self, observation: Any) -> Any:
        if isinstance(observation, dict):
            return observation  # an answer execution returned: nothing to retrieve for it
        question = self._question(observation)
        return self._features(
            question, self.memory.search(self.namespace, question, k=self.k, mode=self.mode)
        )

    async def aperceive(self, observation: Any) -> Any:
        if isinstance(observation, dict):
            return observation
        question = self._question(observation)
        result = await self.memory.asearch(self.namespace, question, k=self.k, mode=self.mode)
        return self._features(question, result)
