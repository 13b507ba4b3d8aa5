"""FallbackModel: order, which errors move on, the attached attempts, streams, batches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from llmagentos.exceptions import (
    ConfigError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelOutputError,
    ModelTimeoutError,
)
from llmagentos.llm.base import Model
from llmagentos.llm.fallback import FallbackModel, attempts_of
from llmagentos.llm.testing import FunctionModel, ScriptedModel
from llmagentos.llm.types import Message, ModelRequest, ModelResponse, StreamEvent


def req() -> ModelRequest:
    return ModelRequest(messages=(Message.user("hi"),))


async def test_first_model_answers_when_it_can() -> None:
    first, second = ScriptedModel(["a"], model_id="m1"), ScriptedModel([], model_id="m2")
    model = FallbackModel([first, second])
    assert model.model_id == "m1" and model.inner is first
    assert (await model.arequest(req())).text == "a"
    assert second.requests == [] and model.fallbacks == 0


@pytest.mark.parametrize(
    "error",
    [
        ModelConnectionError("refused"),
        ModelTimeoutError("slow"),
        ModelHTTPError(500),
        ModelHTTPError(503),
        ModelHTTPError(408),
        ModelHTTPError(409),
        ModelHTTPError(429),
    ],
)
async def test_listed_errors_move_on_to_the_next_model(error: ModelError) -> None:
    model = FallbackModel([ScriptedModel([error]), ScriptedModel(["b"], model_id="m2")])
    reply = await model.arequest(req())
    assert (reply.text, reply.model, model.fallbacks) == ("b", "m2", 1)


@pytest.mark.parametrize(
    "error", [ModelHTTPError(400), ModelHTTPError(401), ModelHTTPError(422), ModelOutputError("x")]
)
async def test_bad_requests_and_other_errors_fail_at_once(error: ModelError) -> None:
    second = ScriptedModel(["b"])
    with pytest.raises(type(error)) as info:
        await FallbackModel([ScriptedModel([error]), second]).arequest(req())
    assert second.requests == [] and attempts_of(info.value) == []


async def test_when_all_fail_the_last_error_carries_every_attempt() -> None:
    errors = [ModelConnectionError("a down"), ModelTimeoutError("b slow"), ModelHTTPError(503)]
    models = [ScriptedModel([e], model_id=f"m{i}") for i, e in enumerate(errors)]
    with pytest.raises(ModelHTTPError) as info:
        await FallbackModel(models).arequest(req())
    assert info.value is errors[-1]
    assert attempts_of(info.value) == [("m0", errors[0]), ("m1", errors[1]), ("m2", errors[2])]
    assert "FallbackModel tried 3 models" in info.value.__notes__[0]
    assert "m0: ModelConnectionError" in info.value.__notes__[0]


async def test_a_bad_request_after_a_fallback_keeps_the_earlier_attempts() -> None:
    first, bad = ModelHTTPError(503), ModelHTTPError(400)
    models = [ScriptedModel([first], model_id="a"), ScriptedModel([bad], model_id="b")]
    models.append(ScriptedModel(["never"]))
    with pytest.raises(ModelHTTPError) as info:
        await FallbackModel(models).arequest(req())
    assert info.value is bad and attempts_of(info.value) == [("a", first), ("b", bad)]


async def test_the_on_tuple_chooses_which_errors_fall_back() -> None:
    model = FallbackModel(
        [ScriptedModel([ModelOutputError("junk")]), ScriptedModel(["ok"])],
        on=(ModelOutputError,),
    )
    assert (await model.arequest(req())).text == "ok"
    narrow = FallbackModel(
        [ScriptedModel([ModelHTTPError(503)]), ScriptedModel(["ok"])], on=(ModelConnectionError,)
    )
    with pytest.raises(ModelHTTPError):
        await narrow.arequest(req())


class Stream(Model):
    def __init__(self, model_id: str, *, fail_first: bool = False, fail_mid: bool = False) -> None:
        self.model_id, self.fail_first, self.fail_mid = model_id, fail_first, fail_mid

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        raise NotImplementedError

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        if self.fail_first:
            raise ModelConnectionError("refused")
        yield StreamEvent(text=self.model_id)
        if self.fail_mid:
            raise ModelConnectionError("cut")
        yield StreamEvent(finish_reason="stop")


async def collect(stream: AsyncIterator[StreamEvent], seen: list[str]) -> None:
    async for event in stream:
        seen.append(event.text)


async def test_streams_fall_back_only_before_their_first_event() -> None:
    model = FallbackModel([Stream("a", fail_first=True), Stream("b")])
    assert [event.text async for event in model.astream(req())] == ["b", ""]
    cut = FallbackModel([Stream("a", fail_mid=True), Stream("b")])
    seen: list[str] = []
    with pytest.raises(ModelConnectionError, match="cut"):
        await collect(cut.astream(req()), seen)
    assert seen == ["a"]


class Batching(FunctionModel):
    supports_batching = True

    def __init__(self, reply: str | Exception) -> None:
        def answer(request: ModelRequest) -> str:
            if isinstance(reply, Exception):
                raise reply
            return reply

        super().__init__(answer)
        self.batches = 0

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        self.batches += 1
        return [await self.arequest(request) for request in requests]


async def test_batches_fall_back_as_a_whole() -> None:
    second = Batching("b")
    model = FallbackModel([Batching(ModelHTTPError(502)), second])
    assert model.supports_batching
    assert [r.text for r in await model.abatch([req(), req()])] == ["b", "b"]
    assert second.batches == 1
    mixed = FallbackModel([ScriptedModel([ModelHTTPError(502)] * 2), ScriptedModel(["x", "y"])])
    assert not mixed.supports_batching
    assert [r.text for r in await mixed.abatch([req(), req()])] == ["x", "y"]


async def test_close_closes_every_model() -> None:
    closed: list[str] = []

    class Closing(ScriptedModel):
        async def aclose(self) -> None:
            closed.append(self.model_id)

    await FallbackModel([Closing([], model_id="a"), Closing([], model_id="b")]).aclose()
    assert closed == ["a", "b"]


def test_needs_a_model() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        FallbackModel([])
