"""OpenAICompatEmbedder against a real OpenAI-compatible server: llama-cpp-python's own,
started with ``--embedding True`` on SmolLM2 (a real peer, not a model of one).

That server answers one vector per token for a model without a pooling layer; the
client mean-pools them. Its batches are wrong for such a model (the second and later
texts get other vectors than alone), so the client sends it one text per request.
The vectors are the server's: the test checks the protocol (order, batching, usage,
errors), and that the memory manager runs on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from llmagentos.embeddings import make_embedder
from llmagentos.exceptions import ModelHTTPError
from llmagentos.kernel.embeddings import EmbeddingService
from llmagentos.llm.testing import allow_network_models
from llmagentos.memory import MemoryManager
from tests.llama_server import llama_server

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("embed_server")
    with llama_server(folder, "--embedding", "True", startup_limit=90.0) as url:
        yield url


def test_vectors_come_back_in_order_one_per_text(server_url: str) -> None:
    embedder = make_embedder(f"{server_url}#smollm2", max_batch=1)
    with allow_network_models():
        batch = embedder.embed(["hello world", "the cat sat", "hello world"])
        alone = embedder.embed(["the cat sat"])
        dimension = embedder.dimension
    assert batch.vectors.shape == (3, dimension)
    np.testing.assert_allclose(np.linalg.norm(batch.vectors, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(batch.vectors[0], batch.vectors[2], atol=1e-4)
    np.testing.assert_allclose(batch.vectors[1], alone.vectors[0], atol=1e-3)
    embedder.close()


def test_memory_runs_on_a_server_embedder(server_url: str, tmp_path: Path) -> None:
    service = EmbeddingService()
    with allow_network_models():
        memory = MemoryManager(
            tmp_path / "m.db", embedder=f"{server_url}#smollm2", embeddings=service
        )
        space = memory.for_agent("remote-embeddings").semantic
        written = space.put(["The harbour freezes in January.", "Tomatoes need full sun."])
        assert written.cost.embedded_texts == 2
        found = space.search("the harbour in January", mode="vector", k=1)
    assert found.items[0].text == "The harbour freezes in January."
    assert found.cost.embedded_texts == 1
    assert service.state()["backends"][f"{server_url}#smollm2"]["texts_embedded"] == 3
    memory.close()
    service.close()


def test_server_errors_are_typed(server_url: str) -> None:
    embedder = make_embedder(f"{server_url}#smollm2", max_batch=1)
    with allow_network_models(), pytest.raises(ModelHTTPError) as caught:
        embedder.embed([123])  # type: ignore[list-item]  # the server refuses a non-string
    assert 400 <= caught.value.status_code < 600
    embedder.close()
