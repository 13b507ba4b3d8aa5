"""CachedModel and its backends: keys, determinism, TTL, LRU, SQLite, tiers, streams."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from llmagentos.exceptions import ConfigError, ModelConnectionError
from llmagentos.llm.base import Model
from llmagentos.llm.cache import (
    CachedModel,
    CacheEntry,
    MemoryCache,
    SQLiteCache,
    TieredCache,
    cache_key,
)
from llmagentos.llm.testing import FunctionModel, ScriptedModel
from llmagentos.llm.types import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamEvent,
    Usage,
)


def req(text: str = "hi", **settings: Any) -> ModelRequest:
    settings.setdefault("temperature", 0)
    return ModelRequest(messages=(Message.user(text),), settings=ModelSettings(**settings))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class StreamingModel(Model):
    """Streams 'a', 'b', 'c' then a final event; may fail after ``fail_after`` events."""

    model_id = "test:stream"

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.calls = 0

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        raise NotImplementedError

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        for index, text in enumerate("abc"):
            if self.fail_after is not None and index >= self.fail_after:
                raise ModelConnectionError("stream broke")
            yield StreamEvent(text=text)
        yield StreamEvent(finish_reason="stop", usage=Usage(prompt_tokens=3, completion_tokens=3))


async def test_hit_returns_stored_reply_marked_cached() -> None:
    inner = ScriptedModel(["one"])
    model = CachedModel(inner)
    first = await model.arequest(req())
    second = await model.arequest(req())
    assert (first.text, first.cached) == ("one", False)
    assert (second.text, second.cached) == ("one", True)
    assert len(inner.requests) == 1
    assert model.cache.stats.to_dict() == {
        "hits": 1, "misses": 1, "stores": 1, "evictions": 0, "expired": 0, "errors": 0,
    }  # fmt: skip


async def test_any_change_to_the_request_or_model_is_a_different_key() -> None:
    base = req("hi")
    keys = {
        cache_key(base, "m"),
        cache_key(base, "other-model"),
        cache_key(req("hello"), "m"),
        cache_key(req("hi", max_tokens=5), "m"),
        cache_key(req("hi", temperature=0, seed=1), "m"),
    }
    assert len(keys) == 5
    assert cache_key(req("hi"), "m") == cache_key(base, "m")


async def test_sampled_requests_bypass_the_cache_unless_asked() -> None:
    inner = FunctionModel(lambda request: "x")
    model = CachedModel(inner)
    for settings in ({"temperature": None}, {"temperature": 0.7}):
        await model.arequest(req(**settings))
        await model.arequest(req(**settings))
    assert len(inner.requests) == 4 and model.uncacheable == 4
    await model.arequest(req(temperature=0.7, seed=3))  # a seed makes it repeatable
    assert (await model.arequest(req(temperature=0.7, seed=3))).cached
    sampled = CachedModel(FunctionModel(lambda request: "x"), cache_sampled=True)
    await sampled.arequest(req(temperature=None))
    assert (await sampled.arequest(req(temperature=None))).cached


async def test_errors_are_never_cached() -> None:
    inner = ScriptedModel([ModelConnectionError("down"), "ok"])
    model = CachedModel(inner)
    with pytest.raises(ModelConnectionError):
        await model.arequest(req())
    assert (await model.arequest(req())).text == "ok"
    assert len(inner.requests) == 2 and len(model.cache) == 1


async def test_ttl_expires_entries() -> None:
    clock = FakeClock()
    inner = FunctionModel(lambda request: "x")
    model = CachedModel(inner, cache=MemoryCache(clock=clock), ttl=10)
    await model.arequest(req())
    clock.now += 9.9
    assert (await model.arequest(req())).cached
    clock.now += 0.2
    assert not (await model.arequest(req())).cached
    assert model.cache.stats.expired == 1 and len(inner.requests) == 2


def test_memory_cache_evicts_least_recently_used() -> None:
    cache = MemoryCache(max_entries=2)
    for key in "ab":
        cache.set(key, ModelResponse(text=key))
    assert cache.get("a") is not None  # a is now more recent than b
    cache.set("c", ModelResponse(text="c"))
    assert cache.get("b") is None and cache.get("a") is not None
    assert cache.stats.evictions == 1 and len(cache) == 2


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_entries"):
        MemoryCache(max_entries=0)
    with pytest.raises(ConfigError, match="max_entries"):
        SQLiteCache(tmp_path / "c.db", max_entries=0)
    with pytest.raises(ConfigError, match="ttl"):
        CachedModel(ScriptedModel([]), ttl=0)


async def test_sqlite_cache_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.db"
    inner = ScriptedModel(["stored"])
    first = CachedModel(inner, cache=SQLiteCache(path))
    await first.arequest(req())
    first.cache.close()
    again = CachedModel(ScriptedModel([]), cache=SQLiteCache(path))
    reply = await again.arequest(req())
    assert (reply.text, reply.cached, reply.model) == ("stored", True, "test:scripted")
    assert len(again.cache) == 1
    again.cache.close()


def test_sqlite_cache_ttl_eviction_and_clear(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = SQLiteCache(tmp_path / "c.db", max_entries=2, clock=clock)
    cache.set("old", ModelResponse(text="old"), ttl=5)
    clock.now += 6
    assert cache.get("old") is None and cache.stats.expired == 1
    for key in "abc":
        cache.set(key, ModelResponse(text=key))
    assert cache.get("a") is None and cache.get("c") is not None
    assert len(cache) == 2 and cache.stats.evictions >= 1
    cache.clear()
    assert len(cache) == 0
    cache.close()


def test_sqlite_errors_count_and_act_as_misses(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    cache._writer.execute("INSERT INTO responses (key, response) VALUES ('k', 'not json')")
    assert cache.get("k") is None
    assert cache.stats.errors == 1 and cache.stats.misses == 1
    cache.close()


def _write_entries(path: str, worker: int) -> None:
    cache = SQLiteCache(path)
    for index in range(30):
        cache.set(f"{worker}-{index}", ModelResponse(text=f"{worker}-{index}"))
    assert cache.stats.errors == 0
    cache.close()


def test_sqlite_cache_is_shared_by_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteCache(path).close()
    # fork: ~0.1 s against ~2.5 s for spawn; the children open their own connections.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_entries, args=(path, n)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=20)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    cache = SQLiteCache(path)
    assert len(cache) == 90
    assert cache.get("2-29") == ModelResponse(text="2-29")
    cache.close()


async def test_tiered_cache_promotes_persistent_hits(tmp_path: Path) -> None:
    sqlite = SQLiteCache(tmp_path / "c.db")
    sqlite.set("k", ModelResponse(text="v"))
    tiered = TieredCache(MemoryCache(), sqlite)
    assert (await tiered.aget_entry("k")) is not None  # from SQLite, now in memory too
    assert tiered.get_entry("k") is not None
    assert sqlite.stats.hits == 1 and tiered.memory.stats.hits == 1
    assert tiered.stats.hits == 2 and tiered.get("missing") is None
    model = CachedModel(ScriptedModel(["fresh"]), cache=tiered)
    await model.arequest(req())
    assert len(tiered.memory) == 2 and len(sqlite) == 2
    tiered.close()


async def test_stream_miss_is_stored_and_hit_replays() -> None:
    inner = StreamingModel()
    model = CachedModel(inner)
    events = [event async for event in model.astream(req())]
    assert "".join(event.text for event in events) == "abc"
    replay = [event async for event in model.astream(req())]
    assert len(replay) == 1 and replay[0].text == "abc"
    assert replay[0].usage == Usage(prompt_tokens=3, completion_tokens=3)
    assert (await model.arequest(req())).text == "abc"
    assert inner.calls == 1


async def test_broken_or_abandoned_streams_are_not_stored() -> None:
    model = CachedModel(StreamingModel(fail_after=2))
    with pytest.raises(ModelConnectionError):
        _ = [event async for event in model.astream(req())]
    abandoned = CachedModel(StreamingModel())
    stream = abandoned.astream(req())
    assert (await anext(stream)).text == "a"
    await stream.aclose()  # type: ignore[attr-defined]
    assert len(model.cache) == 0 and len(abandoned.cache) == 0


async def test_concurrent_identical_misses_make_one_call() -> None:
    calls = 0

    async def slow(request: ModelRequest) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return "shared"

    model = CachedModel(FunctionModel(slow))
    replies = await asyncio.gather(*(model.arequest(req()) for _ in range(5)))
    assert calls == 1 and model.coalesced == 4
    assert [reply.cached for reply in replies].count(False) == 1
    assert {reply.text for reply in replies} == {"shared"}


async def test_coalesced_callers_share_an_error_then_retry_fresh() -> None:
    async def failing(request: ModelRequest) -> str:
        await asyncio.sleep(0.01)
        raise ModelConnectionError("down")

    model = CachedModel(FunctionModel(failing))
    results = await asyncio.gather(
        *(model.arequest(req()) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, ModelConnectionError) for result in results)
    assert len(model.inner.requests) == 1  # type: ignore[attr-defined]
    model.inner = FunctionModel(lambda request: "back")
    assert (await model.arequest(req())).text == "back"


async def test_a_cancelled_leader_hands_over_to_a_waiting_caller() -> None:
    started = asyncio.Event()

    async def slow(request: ModelRequest) -> str:
        started.set()
        await asyncio.sleep(0.05)
        return "done"

    model = CachedModel(FunctionModel(slow))
    leader = asyncio.create_task(model.arequest(req()))
    await started.wait()
    follower = asyncio.create_task(model.arequest(req()))
    await asyncio.sleep(0)
    leader.cancel()
    assert (await follower).text == "done"
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert model.coalesced == 1 and len(model.inner.requests) == 2  # type: ignore[attr-defined]


class BatchingModel(FunctionModel):
    supports_batching = True

    def __init__(self) -> None:
        super().__init__(lambda request: request.messages[0].content or "")
        self.batches: list[int] = []

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        self.batches.append(len(requests))
        return [await self.arequest(request) for request in requests]


async def test_batch_sends_only_misses_to_a_batching_model() -> None:
    inner = BatchingModel()
    model = CachedModel(inner)
    await model.arequest(req("b"))
    replies = await model.abatch([req("a"), req("b"), req("c", temperature=1)])
    assert [reply.text for reply in replies] == ["a", "b", "c"]
    assert [reply.cached for reply in replies] == [False, True, False]
    assert inner.batches == [2]
    unbatched = CachedModel(FunctionModel(lambda request: "x"))
    assert [r.cached for r in await unbatched.abatch([req(), req()])] == [False, True]


def test_sync_face_uses_the_cache() -> None:
    model = CachedModel(ScriptedModel(["once"]))
    assert model.request(req()).text == "once"
    assert model.request(req()).cached


def test_entries_can_be_stored_directly() -> None:
    cache = MemoryCache()
    cache.put_entry("k", CacheEntry(ModelResponse(text="v")))
    assert cache.get("k") == ModelResponse(text="v")
