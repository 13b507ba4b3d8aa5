"""Model calls inside a durable run: recorded once, replayed on resume, charged to the budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar

from llmagentos._blocking import run_blocking
from llmagentos.durable.digest import model_digest
from llmagentos.durable.journal import Effect, Journal
from llmagentos.durable.scope import StepScope, current_scope
from llmagentos.exceptions import ResumeMismatch
from llmagentos.llm.base import WrapperModel
from llmagentos.llm.types import ModelRequest, ModelResponse, StreamEvent, ToolCall, Usage

__all__ = ["DurableModel"]

# Set while a DurableModel's inner model runs: a DurableModel nested inside it (a kernel
# handle wrapped again by hand) only delegates, so each call takes one key, not two.
_RECORDING: ContextVar[bool] = ContextVar("llmagentos_durable_model_recording", default=False)


def _journal_of(scope: StepScope | None) -> Journal | None:
    if scope is None or _RECORDING.get():
        return None
    return scope.journal


class DurableModel(WrapperModel):
    """Wraps a model so each call in a durable run is an effect with an idempotency key.

    Inside a durable run, a call whose key completed before returns the recorded reply:
    a resumed run sees exactly the replies the crashed one saw (sampled ones too) and
    pays for no call twice. The reply is bound to the digest of the request (the model
    id and the request's canonical JSON): a replay that asks something else at that
    position gets :class:`~llmagentos.exceptions.ResumeMismatch`, never the old reply.

    A sampled request (temperature above 0, or the backend's default) that names no
    seed is given one derived from the run's fingerprint and the call's position
    (:meth:`~llmagentos.durable.scope.StepScope.sample_seed`): a backend that honours
    seeds (the embedded model does) then samples each call the same in a resumed run
    as in its fault-free twin, instead of by how many calls its process made before.

    Tokens are charged to the run's budget (replayed calls included). Outside a durable
    run it only delegates. The kernel wraps every model handle it gives an agent in
    one, so planners built from a model id are journaled with no other setting.
    """

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        scope = current_scope()
        journal = _journal_of(scope)
        if scope is None or journal is None:
            return await self.inner.arequest(request)
        key, request, digest, recorded = await self._prepare(scope, journal, request)
        if recorded is not None and recorded.status == "done":
            response = _recorded_reply(journal, recorded)
        else:
            await run_blocking(self._started, journal, key, request, digest)
            token = _RECORDING.set(True)
            try:
                response = await self.inner.arequest(request)
            finally:
                _RECORDING.reset(token)
            await run_blocking(
                journal.effect_done, key, response.model_dump(mode="json"), audit=None
            )
        if scope.meter is not None:
            scope.meter.charge("tokens", response.usage.total_tokens)
        return response

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream the reply; in a durable run the reply is recorded when the stream ends
        (a recorded one is replayed as one event)."""
        scope = current_scope()
        journal = _journal_of(scope)
        if scope is None or journal is None:
            async for event in self.inner.astream(request):
                yield event
            return
        key, request, digest, recorded = await self._prepare(scope, journal, request)
        if recorded is not None and recorded.status == "done":
            response = _recorded_reply(journal, recorded)
            yield StreamEvent(
                text=response.text or "", tool_calls=response.tool_calls,
                finish_reason=response.finish_reason, usage=response.usage,
            )  # fmt: skip
        else:
            await run_blocking(self._started, journal, key, request, digest)
            text: list[str] = []
            calls: list[ToolCall] = []
            usage, finish = Usage(), None
            events = self.inner.astream(request)
            while True:
                # Flagged around each step of the inner stream only, never across a
                # yield: the consumer's own model calls must still be recorded.
                token = _RECORDING.set(True)
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    break
                finally:
                    _RECORDING.reset(token)
                text.append(event.text)
                calls.extend(event.tool_calls)
                finish = event.finish_reason or finish
                usage = event.usage if event.usage is not None else usage
                yield event
            joined = "".join(text)
            response = ModelResponse(
                text=joined if joined or not calls else None, tool_calls=tuple(calls),
                usage=usage, finish_reason=finish, model=self.model_id,
            )  # fmt: skip
            await run_blocking(
                journal.effect_done, key, response.model_dump(mode="json"), audit=None
            )
        if scope.meter is not None:
            scope.meter.charge("tokens", response.usage.total_tokens)

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        """Each request as its own recorded call, keyed in request order."""
        if _journal_of(current_scope()) is None:
            return await self.inner.abatch(requests)
        # Tasks start in creation order and each takes its key before its first await.
        return list(await asyncio.gather(*(self.arequest(r) for r in requests)))

    async def _prepare(
        self, scope: StepScope, journal: Journal, request: ModelRequest
    ) -> tuple[str, ModelRequest, str, Effect | None]:
        key = scope.next_key("model")
        settings = request.settings
        if settings.seed is None and settings.temperature != 0:
            seeded = settings.model_copy(update={"seed": scope.sample_seed(key)})
            request = request.model_copy(update={"settings": seeded})
        digest = model_digest(self.model_id, request.model_dump(mode="json"))
        recorded = await run_blocking(journal.effect, key)
        if recorded is not None and (recorded.kind != "model" or recorded.digest != digest):
            raise ResumeMismatch(
                scope.n, f"model call {key}",
                _asked(recorded.name, recorded.request, recorded.digest),
                _asked(self.model_id, request.model_dump(mode="json"), digest),
            )  # fmt: skip
        return key, request, digest, recorded

    def _started(self, journal: Journal, key: str, request: ModelRequest, digest: str) -> None:
        journal.effect_started(key, "model", self.model_id, request.model_dump(mode="json"), digest)


def _asked(model: str, request: object, digest: str) -> str:
    """A model request in a line: the model, the last message's start, the digest."""
    messages = request.get("messages") if isinstance(request, dict) else None
    last = messages[-1] if isinstance(messages, list) and messages else {}
    content = last.get("content") if isinstance(last, dict) else None
    text = " ".join(str(content or "").split())
    return f"{model} asked {text[:48]!r} (request {digest[:12]})"


def _recorded_reply(journal: Journal, recorded: Effect) -> ModelResponse:
    return recorded.result_as(ModelResponse, journal=journal.path, what="reply")
