"""The LLM layer's blocking work never waits on asyncio's default executor."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmagentos.llm.cache import CacheEntry, SQLiteCache
from llmagentos.llm.types import Message, ModelRequest, ModelResponse, ModelSettings

HUNG = 40  # more than the default executor ever has: nothing queued there would run


@pytest.fixture
def full_default_executor() -> Iterator[threading.Event]:
    release = threading.Event()
    yield release
    release.set()


def _fill(release: threading.Event) -> list[asyncio.Future[bool]]:
    loop = asyncio.get_running_loop()
    return [loop.run_in_executor(None, release.wait) for _ in range(HUNG)]


async def test_sqlite_cache_stores_off_the_default_executor(
    tmp_path: Path, full_default_executor: threading.Event
) -> None:
    stuck = _fill(full_default_executor)
    cache = SQLiteCache(tmp_path / "cache.db")
    try:
        async with asyncio.timeout(10):
            await cache.aput_entry("k", CacheEntry(ModelResponse(text="v")))
        assert cache.get("k") == ModelResponse(text="v")
    finally:
        cache.close()
        full_default_executor.set()
        await asyncio.gather(*stuck)


async def test_the_local_model_runs_on_a_thread_of_its_own(
    full_default_executor: threading.Event,
) -> None:
    pytest.importorskip("llama_cpp", reason="needs llmagentos[local]")
    from llmagentos.llm.local import LocalModel

    stuck = _fill(full_default_executor)
    model = LocalModel("smollm2")
    try:
        async with asyncio.timeout(120):  # loading and four tokens, on a busy machine
            reply = await model.achat("Say hi.", temperature=0, max_tokens=4)
            request = ModelRequest(
                messages=(Message.user("Say hi."),), settings=ModelSettings(max_tokens=4)
            )
            chunks = [event async for event in model.astream(request)]
        assert reply.usage.completion_tokens > 0
        assert chunks and chunks[-1].finish_reason is not None
    finally:
        full_default_executor.set()
        await asyncio.gather(*stuck)
