"""Which evaluated prompt prefixes the batch engine keeps in its KV cache, and for whom.

The LLM planners send the same few-shot system prompt with every decision of every
agent; only the observation at the end differs. The engine keeps such prefixes in
sequences of their own (*slots*) and starts a new request from the slot sharing the
longest token prefix with its prompt: the slot's KV cells are copied into the
request's sequence and only the rest of the prompt is evaluated.

This module is the bookkeeping only (no llama.cpp): what to copy from, when to keep a
prompt as a new slot, when to cut a slot down to the part its users share. The engine
does the copying. The rules:

* a match counts from :data:`MIN_PREFIX` tokens; it leaves two prompt tokens at least to
  evaluate (the last for its logits; and llama.cpp rounds a lone token's attention
  differently, see :func:`~llmagentos.llm.local_batch.prompt_chunk`);
* a prompt that matched nothing (or less than half of itself) becomes a slot once it is
  evaluated, in a free slot or in place of the least recently used one (unless it is
  too short to be worth matching);
* a slot matched on more than half of its length, but not all, is cut to the shared
  part: two agents' prompts leave the few-shot prefix they share, not one agent's
  observation;
* while a prompt that will become a slot is being evaluated, requests sharing more of
  it than any slot offers wait for it (cold start: one evaluation, not eight).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["MIN_PREFIX", "PrefixCache", "PrefixMatch", "Slot", "common_prefix"]

MIN_PREFIX = 16
"""Shortest shared prefix worth a copy (tokens): below it, evaluating is as cheap."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The number of leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:  # the common case of a slot fully reused: one C-level compare
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]: bisect on slice equality
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(slots=True)
class Slot:
    """A sequence holding an evaluated prefix: ``tokens`` are at positions 0..len-1."""

    seq: int
    tokens: list[int] = field(default_factory=list)
    used: int = 0  # the engine's clock at its last use (least recently used is evicted)
    hits: int = 0


@dataclass(frozen=True, slots=True)
class PrefixMatch:
    """Where a prompt starts from: copy ``length`` tokens of ``slot`` (None: from scratch)."""

    slot: Slot | None
    length: int
    store: bool  # keep this prompt as a slot once it is evaluated


class PrefixCache:
    """The prefix slots of one engine.

    Args:
        seqs: the sequence ids reserved for slots (none: the cache is off).
    """

    def __init__(self, seqs: Sequence[int]) -> None:
        self.slots = [Slot(seq) for seq in seqs]
        self._clock = 0
        self._pending: dict[int, list[int]] = {}  # request id -> a prompt becoming a slot
        self.hits = self.misses = 0
        self.reused_tokens = 0

    @property
    def enabled(self) -> bool:
        return bool(self.slots)

    def match(self, tokens: Sequence[int]) -> PrefixMatch:
        """The best slot for a prompt (at most ``len(tokens) - 2`` tokens of it)."""
        best: Slot | None = None
        length = 0
        for slot in self.slots:
            if not slot.tokens:
                continue
            shared = common_prefix(slot.tokens, tokens)
            if shared > length:
                best, length = slot, shared
        length = min(length, len(tokens) - 2)  # two at least to evaluate: see local_batch
        if length < MIN_PREFIX:
            best, length = None, 0
        store = self.enabled and len(tokens) > MIN_PREFIX and 2 * length < len(tokens)
        return PrefixMatch(best, length, store)

    def should_wait(self, tokens: Sequence[int], match: PrefixMatch) -> bool:
        """Whether a prompt gains more by waiting for a prompt being evaluated (that
        will become a slot) than ``match`` gives now."""
        for pending in self._pending.values():
            if common_prefix(pending, tokens) >= match.length + MIN_PREFIX:
                return True
        return False

    def use(self, match: PrefixMatch) -> int | None:
        """Count the match; returns the length to cut its slot to, if it is to be cut."""
        self._clock += 1
        if match.slot is None:
            self.misses += 1
            return None
        slot = match.slot
        self.hits += 1
        self.reused_tokens += match.length
        slot.hits += 1
        slot.used = self._clock
        if match.length < len(slot.tokens) and 2 * match.length >= len(slot.tokens):
            del slot.tokens[match.length :]
            return match.length
        return None

    def expect(self, request: int, tokens: Sequence[int]) -> None:
        """A prompt that will become a slot is being evaluated (see :meth:`should_wait`)."""
        self._pending[request] = list(tokens)

    def forget(self, request: int) -> None:
        """That prompt was stored, or its request ended first."""
        self._pending.pop(request, None)

    def victim(self) -> Slot:
        """The slot to store a new prefix in: a free one, else the least recently used."""
        self._clock += 1
        return min(self.slots, key=lambda s: (bool(s.tokens), s.used))

    def stored(self, slot: Slot, tokens: Sequence[int]) -> None:
        """``slot`` now holds ``tokens``."""
        slot.tokens = list(tokens)
        slot.used = self._clock
        slot.hits = 0

    def clear(self) -> None:
        """Forget every slot (the engine cleared the KV cache)."""
        for slot in self.slots:
            slot.tokens = []
        self._pending.clear()

    def stats(self) -> dict[str, int]:
        return {
            "prefix_hits": self.hits,
            "prefix_misses": self.misses,
            "prefix_reused_tokens": self.reused_tokens,
            "prefix_slots_used": sum(1 for s in self.slots if s.tokens),
        }
