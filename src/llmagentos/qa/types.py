"""What the question-answering agent passes between its modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from llmagentos.qa.passages import Passage

__all__ = ["Answer", "Retrieved"]


@dataclass(frozen=True, slots=True)
class Retrieved:
    """Perception's features: the question, its passages (best first) and how well the
    best passage covers the question's content words (see :func:`~llmagentos.qa.text.coverage`)."""

    question: str
    passages: tuple[Passage, ...]
    coverage: float
    mode: str


@dataclass(frozen=True, slots=True)
class Answer:
    """Planning's action: an answer with the passages it cites, or an abstention.

    Attributes:
        text: the answer; ``None`` when the agent abstained.
        citations: the cited passages (each one of ``retrieved``).
        reason: why: which passages, or why it abstained.
        source: ``"model"``, ``"extractive"`` or ``"retrieval"`` (abstained before asking).
    """

    question: str
    text: str | None
    citations: tuple[Passage, ...]
    retrieved: tuple[Passage, ...]
    reason: str
    source: Literal["model", "extractive", "retrieval"]

    @property
    def abstained(self) -> bool:
        return self.text is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "reason": self.reason,
            "source": self.source,
            "citations": [
                {
                    "number": p.number,
                    "path": p.path,
                    "heading": p.heading,
                    "title": p.title,
                    "key": p.key,
                    "text": p.text,
                }
                for p in self.citations
            ],
        }
