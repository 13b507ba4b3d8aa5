"""Model-written memories: summarise a text, or extract its facts, before storing them.

Writes store what they are given; a :class:`Distiller` is the explicit way to have a
language model rewrite it first. It calls the model through the kernel (a handle with
its own agent name and token budget, so the scheduler queues, caches and accounts for
it like any agent's calls), and the write's :class:`~llmagentos.memory.types.Cost`
reports the model tokens. When the budget is spent the write fails with
:class:`~llmagentos.exceptions.BudgetExceeded` before anything is stored.

::

    distiller = Distiller("local:smollm2", token_budget=20_000)
    memory.put(ns, [long_transcript], distill=distiller)  # stores its facts, one per item
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from llmagentos.llm.base import Model

__all__ = ["Distilled", "Distiller"]

_PROMPTS = {
    "facts": (
        "List the facts stated in the text below, one short sentence per line, each one "
        "understandable on its own. Write nothing else.\n\nText:\n{text}"
    ),
    "summary": (
        "Summarise the text below in one or two sentences. Write nothing else.\n\nText:\n{text}"
    ),
}
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


@dataclass(slots=True)
class Distilled:
    """What the model made of one text, and the tokens it took."""

    texts: list[str]
    tokens: int


class Distiller:
    """Rewrites texts with a model before they are stored.

    Args:
        model: a model id or :class:`~llmagentos.llm.base.Model`.
        mode: ``facts`` (one item per stated fact) or ``summary`` (one item).
        token_budget: the most tokens this distiller may use, all calls together.
        agent: the name its calls are scheduled and accounted under.
        max_tokens: the longest reply per text.
    """

    def __init__(
        self,
        model: str | Model,
        *,
        mode: Literal["facts", "summary"] = "facts",
        token_budget: int,
        agent: str = "memory-distiller",
        max_tokens: int = 160,
    ) -> None:
        from llmagentos.exceptions import MemoryInputError
        from llmagentos.kernel.default import agent_model

        if mode not in _PROMPTS:
            raise MemoryInputError("mode", f"must be 'facts' or 'summary' (got {mode!r})")
        if isinstance(token_budget, bool) or not isinstance(token_budget, int) or token_budget < 1:
            raise MemoryInputError(
                "token_budget", f"must be a positive integer (got {token_budget!r})"
            )
        self.mode = mode
        self.max_tokens = max_tokens
        self.model = agent_model(model, agent=agent, token_budget=token_budget)
        self.budget = token_budget
        self.used = 0
        self.agent = agent

    def distill(self, text: str) -> Distilled:
        """The model's facts (or summary) of ``text``; the text itself if it wrote none.

        Raises:
            BudgetExceeded: the token budget is spent.
        """
        from llmagentos.exceptions import BudgetExceeded

        if self.used >= self.budget:
            raise BudgetExceeded(self.agent, "tokens", self.budget, self.used)
        reply = self.model.chat(
            _PROMPTS[self.mode].format(text=text), temperature=0, max_tokens=self.max_tokens
        )
        tokens = reply.usage.total_tokens
        self.used += tokens
        written = (reply.text or "").strip()
        if self.mode == "summary":
            texts = [written] if written else []
        else:
            texts = [_BULLET.sub("", line).strip() for line in written.splitlines()]
            texts = [t for t in texts if len(t) > 2]
        return Distilled(texts or [text], tokens)
