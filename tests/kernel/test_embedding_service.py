"""The kernel's embedding service: batching across callers, the cache, accounting, budgets."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from llmagentos.embeddings import Embedder, Embeddings
from llmagentos.embeddings.hashing import HashingEmbedder
from llmagentos.exceptions import BudgetExceeded, MemoryBackendError, MemoryInputError
from llmagentos.kernel.embeddings import EmbeddingService


class SlowRecordingEmbedder(Embedder):
    """Hashing vectors, a fixed cost per call, and a record of every batch it ran."""

    model_id = "test:slow"
    dimension = 32
    max_batch = 16

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.batches: list[list[str]] = []
        self._inner = HashingEmbedder(32)

    def embed(self, texts: Sequence[str]) -> Embeddings:
        self.batches.append(list(texts))
        time.sleep(self.delay)
        return self._inner.embed(texts)


def test_concurrent_callers_share_batches() -> None:
    embedder = SlowRecordingEmbedder()
    service = EmbeddingService()
    service.add_backend(embedder)
    handles = [service.embedder_for(f"agent{i}", "test:slow") for i in range(8)]
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = handles[i].embed([f"text {i}"]).vectors[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The first call runs alone; the others queued behind it and ran together.
    assert len(embedder.batches) < 8
    assert max(len(b) for b in embedder.batches) > 1
    reference = HashingEmbedder(32)
    for i, vector in results.items():
        np.testing.assert_allclose(vector, reference.embed([f"text {i}"]).vectors[0])
    state = service.state()
    assert state["backends"]["test:slow"]["texts_embedded"] == 8
    assert {name: a["texts"] for name, a in state["agents"].items()} == {
        f"agent{i}": 1 for i in range(8)
    }
    service.close()


def test_cache_answers_repeats_without_model_work() -> None:
    embedder = SlowRecordingEmbedder(delay=0)
    service = EmbeddingService()
    service.add_backend(embedder)
    handle = service.embedder_for("reader", "test:slow")
    first, report = handle.embed_with_report(["alpha", "beta", "alpha"])
    assert (report.embedded, report.cached) == (3, 0)
    assert embedder.batches == [["alpha", "beta"]]  # duplicates inside a call embed once
    second, report = handle.embed_with_report(["beta", "alpha"])
    assert (report.embedded, report.cached, report.tokens) == (0, 2, 0)
    np.testing.assert_array_equal(second.vectors, first.vectors[[1, 0]])
    assert len(embedder.batches) == 1
    assert service.state()["agents"]["reader"]["cached"] == 2
    service.close()


async def test_async_callers_do_not_block_their_loop() -> None:
    embedder = SlowRecordingEmbedder(delay=0.1)
    service = EmbeddingService()
    service.add_backend(embedder)
    handle = service.embedder_for("async", "test:slow")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    vectors = await asyncio.gather(*(handle.aembed([f"t{i}"]) for i in range(4)))
    task.cancel()
    assert len(vectors) == 4
    assert ticks >= 5  # the loop kept running while the worker embedded
    service.close()


def test_token_budget_refuses_once_spent() -> None:
    service = EmbeddingService()
    handle = service.embedder_for("thrifty", HashingEmbedder(16), token_budget=5)
    handle.embed(["one two three four five six"])
    with pytest.raises(BudgetExceeded, match="thrifty"):
        handle.embed(["more words"])
    service.close()


def test_errors_reach_the_caller_and_bad_input_is_named() -> None:
    class Broken(SlowRecordingEmbedder):
        model_id = "test:broken"

        def embed(self, texts: Sequence[str]) -> Embeddings:
            raise RuntimeError("backend exploded")

    service = EmbeddingService()
    service.add_backend(Broken())
    handle = service.embedder_for("a", "test:broken")
    with pytest.raises(RuntimeError, match="exploded"):
        handle.embed(["x"])
    with pytest.raises(MemoryInputError, match="texts"):
        handle.embed("not a list")  # type: ignore[arg-type]
    with pytest.raises(MemoryInputError, match=r"texts\[1\]"):
        handle.embed(["ok", 3])  # type: ignore[list-item]
    service.close()
    with pytest.raises(MemoryBackendError, match="closed"):
        handle.embed(["after close"])
