"""Model calls inside a durable run: recorded once, replayed on resume, charged to the budget."""

from __future__ import annotations

from llmagentos.durable.scope import current_scope
from llmagentos.llm.base import WrapperModel
from llmagentos.llm.types import ModelRequest, ModelResponse

__all__ = ["DurableModel"]


class DurableModel(WrapperModel):
    """Wraps a model so each call in a durable run is an effect with an idempotency key.

    Inside a durable run, a call whose key completed before returns the recorded reply:
    a resumed run sees exactly the replies the crashed one saw (sampled ones too) and
    pays for no call twice. Tokens are charged to the run's budget. Outside a durable
    run it only delegates.
    """

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        scope = current_scope()
        journal = None if scope is None else scope.journal
        if scope is None or journal is None:
            return await self.inner.arequest(request)
        key = scope.next_key("model")
        found = journal.effect(key)
        if found is not None and found[0] == "done":
            response = ModelResponse.model_validate(found[1])
        else:
            journal.effect_started(key, "model", self.model_id, None)
            response = await self.inner.arequest(request)
            journal.effect_done(key, response.model_dump(mode="json"), audit=None)
        if scope.meter is not None:
            scope.meter.charge("tokens", response.usage.total_tokens)
        return response
