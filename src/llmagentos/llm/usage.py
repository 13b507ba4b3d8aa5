"""Usage accounting per agent, and budgets enforced before each call.

One :class:`UsageTracker` is shared by every :class:`AccountedModel` of a program; each
wrapper names the agent it bills. Cost comes from a price table of USD per million
prompt and completion tokens, looked up by the reply's ``model`` and then by the
wrapped model's id (so the model of a fallback that answered is the one billed).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from llmagentos.exceptions import BudgetExceeded, ConfigError
from llmagentos.llm.base import Model, WrapperModel
from llmagentos.llm.types import ModelRequest, ModelResponse, StreamEvent, Usage

__all__ = ["AccountedModel", "AgentUsage", "PriceTable", "UsageTracker"]

PriceTable = Mapping[str, tuple[float, float]]
"""model id -> (USD per 1M prompt tokens, USD per 1M completion tokens)"""


@dataclass
class AgentUsage:
    """What one agent used. ``requests`` counts every call; ``cached`` ones among them
    cost no tokens; ``errors`` are calls that failed."""

    requests: int = 0
    cached: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}


class UsageTracker:
    """Totals per agent; thread- and task-safe (one lock, never held across an await)."""

    def __init__(self, prices: PriceTable | None = None) -> None:
        self.prices = dict(prices or {})
        for model, (prompt, completion) in self.prices.items():
            if prompt < 0 or completion < 0:
                raise ConfigError(f"prices.{model}", "prices must be >= 0 USD per 1M tokens")
        self._agents: dict[str, AgentUsage] = {}
        self._lock = threading.Lock()

    def cost_of(self, usage: Usage, *models: str) -> float:
        """USD for ``usage`` at the price of the first of ``models`` in the table (else 0)."""
        for model in models:
            price = self.prices.get(model)
            if price is not None:
                return (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1e6
        return 0.0

    def record(
        self,
        agent: str,
        *,
        usage: Usage | None = None,
        models: Sequence[str] = (),
        cached: bool = False,
        error: bool = False,
    ) -> None:
        """Count one call of ``agent``: its usage (None: unknown), cache hit or failure."""
        cost = 0.0 if usage is None or cached else self.cost_of(usage, *models)
        with self._lock:
            totals = self._agents.setdefault(agent, AgentUsage())
            totals.requests += 1
            totals.cached += cached
            totals.errors += error
            if usage is not None and not cached:
                totals.prompt_tokens += usage.prompt_tokens
                totals.completion_tokens += usage.completion_tokens
                totals.cost += cost

    def usage(self, agent: str) -> AgentUsage:
        """A copy of ``agent``'s totals (zeros if it made no call)."""
        with self._lock:
            return replace(self._agents.get(agent) or AgentUsage())

    def agents(self) -> list[str]:
        with self._lock:
            return sorted(self._agents)

    def total(self) -> AgentUsage:
        """Every agent's usage added up."""
        with self._lock:
            items = list(self._agents.values())
        total = AgentUsage()
        for item in items:
            for name, value in asdict(item).items():
                setattr(total, name, getattr(total, name) + value)
        return total

    def snapshot(self) -> dict[str, Any]:
        """JSON-able totals: ``{"agents": {name: {...}}, "total": {...}}``."""
        with self._lock:
            agents = {name: item.to_dict() for name, item in sorted(self._agents.items())}
        return {"agents": agents, "total": self.total().to_dict()}

    def reset(self, agent: str | None = None) -> None:
        """Forget one agent's usage, or everyone's."""
        with self._lock:
            if agent is None:
                self._agents.clear()
            else:
                self._agents.pop(agent, None)


class AccountedModel(WrapperModel):
    """Records every call in ``tracker`` under ``agent`` and enforces its budgets.

    The budget check runs *before* a call, against what the agent has used so far
    (through any wrapper billing the same agent): once the total reaches a budget,
    calls raise :class:`BudgetExceeded`. The call that crosses a budget still completes
    and its whole usage is recorded, so ``used`` in the error shows the overshoot.
    Calls running at the same moment all pass the check, so each may cross it.
    """

    def __init__(
        self,
        inner: Model,
        tracker: UsageTracker,
        *,
        agent: str,
        token_budget: int | None = None,
        cost_budget: float | None = None,
    ) -> None:
        if token_budget is not None and token_budget < 0:
            raise ConfigError("token_budget", f"must be >= 0 or None, got {token_budget}")
        if cost_budget is not None and cost_budget < 0:
            raise ConfigError("cost_budget", f"must be >= 0 or None, got {cost_budget}")
        super().__init__(inner)
        self.tracker, self.agent = tracker, agent
        self.token_budget, self.cost_budget = token_budget, cost_budget

    def check_budget(self) -> None:
        """Raise :class:`BudgetExceeded` if the agent has used up a budget."""
        if self.token_budget is None and self.cost_budget is None:
            return
        used = self.tracker.usage(self.agent)
        if self.token_budget is not None and used.total_tokens >= self.token_budget:
            raise BudgetExceeded(self.agent, "tokens", self.token_budget, used.total_tokens)
        if self.cost_budget is not None and used.cost >= self.cost_budget:
            raise BudgetExceeded(self.agent, "cost", self.cost_budget, used.cost)

    def _record(self, response: ModelResponse) -> None:
        self.tracker.record(
            self.agent,
            usage=response.usage,
            models=(response.model, self.inner.model_id),
            cached=response.cached,
        )

    def _record_error(self) -> None:
        self.tracker.record(self.agent, error=True)

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        self.check_budget()
        try:
            response = await self.inner.arequest(request)
        except Exception:
            self._record_error()
            raise
        self._record(response)
        return response

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        if not self.inner.supports_batching:
            return await Model.abatch(self, requests)
        self.check_budget()
        try:
            responses = await self.inner.abatch(requests)
        except Exception:
            self._record_error()
            raise
        for response in responses:
            self._record(response)
        return responses

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.check_budget()
        usage: Usage | None = None
        failed = False
        try:
            async for event in self.inner.astream(request):
                usage = event.usage or usage
                yield event
        except Exception:
            failed = True
            raise
        finally:  # also when abandoned early: bill what the stream reported so far
            models = (self.inner.model_id,)
            self.tracker.record(self.agent, usage=usage, models=models, error=failed)
