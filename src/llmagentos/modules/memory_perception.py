"""Perception that recalls: the observation's features, plus what memory holds about them.

:class:`MemoryPerception` runs an inner perception (default: the observation as it is),
then searches the agent's memory with the features' text (hybrid search by default,
under a metadata filter such as the environment id) and hands both on as
:class:`Recalled` features. Two searches, each optional:

* **this state**: items whose ``state`` metadata is the digest of this very state text
  (what :mod:`~llmagentos.modules.memory_lessons` writes), so a planner can act on
  exact lessons;
* **related**: the ``related`` best items for the text among the rest (similar states,
  episode summaries, model-written lessons), context for a prompt.

Nothing here calls a language model; a search costs one query embedding at most (the
kernel's embedding service caches it, and a namespace without an embedder answers
lexically).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmagentos.exceptions import ConfigError
from llmagentos.memory.spaces import AgentMemory, MemorySpace
from llmagentos.memory.types import Cost, MemoryItem, SearchMode
from llmagentos.modules.llm_planning import features_text
from llmagentos.modules.perception import PerceptionModule
from llmagentos.types import Features, Observation

__all__ = ["MemoryPerception", "Recalled", "state_digest", "state_text"]


def state_digest(text: str) -> str:
    """A short, stable id of a state text (the ``state`` metadata of lessons)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False, slots=True)
class Recalled:
    """Features with what memory recalled for them.

    Attributes:
        features: what the inner perception made of the observation.
        text: the features as text (the search query; the state lessons are about).
        here: items about this very state (``state`` metadata = :func:`state_digest`),
            best first.
        related: other items the search found for the text, best first.
        cost: what the searches cost.
    """

    features: Features
    text: str
    here: tuple[MemoryItem, ...] = ()
    related: tuple[MemoryItem, ...] = ()
    cost: Cost = field(default_factory=Cost)

    @property
    def state(self) -> str:
        """The digest of :attr:`text`."""
        return state_digest(self.text)

    def __str__(self) -> str:
        # A planner that knows nothing of memory reads the state as it would without it.
        return self.text


def state_text(features: Features) -> str:
    """The state text of features: a :class:`Recalled`'s text, else the features as text."""
    if isinstance(features, Recalled):
        return features.text
    return features_text(features)


class MemoryPerception(PerceptionModule):
    """Perceives with ``inner``, then recalls from ``memory`` what it holds about the state.

    Args:
        memory: where to search: a :class:`~llmagentos.memory.MemorySpace`, or an
            :class:`~llmagentos.memory.AgentMemory` (its ``skills`` space: lessons).
        inner: the perception whose features are searched for (default: identity).
        k: at most this many items about this state.
        related: at most this many other items (0: no second search).
        mode: the search mode (``hybrid``, ``lexical`` or ``vector``).
        where: a metadata filter every search adds (e.g. ``{"env": "TextMaze-v0"}``).
    """

    depends_on_learning = True  # a learner may write what the next search should find

    def __init__(
        self,
        memory: MemorySpace | AgentMemory,
        *,
        inner: PerceptionModule | None = None,
        k: int = 8,
        related: int = 0,
        mode: SearchMode = "hybrid",
        where: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if k < 0 or related < 0:
            raise ConfigError("k" if k < 0 else "related", "must be >= 0")
        self.space = memory.skills if isinstance(memory, AgentMemory) else memory
        self.inner = inner
        self.k, self.related, self.mode = k, related, mode
        self.where = dict(where or {})
        self.searches = 0

    def reset(self, *, seed: int | None = None) -> Any:
        if self.inner is not None:
            self.inner.reset(seed=seed)
        return super().reset(seed=seed)

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        if self.inner is not None:
            self.inner.train(mode)

    def _filter(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        parts = [{key: value} for key, value in self.where.items()]
        if extra:
            parts.append(dict(extra))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def perceive(self, observation: Observation) -> Recalled:
        features = observation if self.inner is None else self.inner.perceive(observation)
        text = features_text(features)
        cost = Cost()
        here: list[MemoryItem] = []
        if self.k:
            found = self.space.search(
                text, k=self.k, mode=self.mode, where=self._filter({"state": state_digest(text)})
            )
            self.searches += 1
            cost.add(found.cost)
            here = found.items
        related: list[MemoryItem] = []
        if self.related:
            found = self.space.search(
                text, k=self.related + len(here), mode=self.mode, where=self._filter()
            )
            self.searches += 1
            cost.add(found.cost)
            seen = {item.id for item in here}
            related = [item for item in found.items if item.id not in seen][: self.related]
        return Recalled(features, text, tuple(here), tuple(related), cost)
