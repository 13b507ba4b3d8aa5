"""Embedders: the embedded MiniLM default, feature hashing, and ids."""

from __future__ import annotations

import numpy as np
import pytest

from llmagentos.embeddings import make_embedder, normalise
from llmagentos.embeddings.hashing import HashingEmbedder
from llmagentos.exceptions import MemoryInputError, UnknownModelError

pytest.importorskip("onnxruntime", reason="needs the memory extra")


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    return make_embedder("local:minilm")


def test_minilm_puts_paraphrases_closer_than_unrelated_text(minilm) -> None:  # type: ignore[no-untyped-def]
    vectors = minilm.embed(
        [
            "The cat sat on the mat.",
            "A feline rested on a rug.",
            "Stock markets fell sharply today.",
        ]
    ).vectors
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > 0.4 > unrelated + 0.2


def test_minilm_batching_and_order_do_not_change_vectors(minilm) -> None:  # type: ignore[no-untyped-def]
    texts = [f"passage number {i} " + "word " * (i % 7) for i in range(70)]  # > one sub-batch
    together = minilm.embed(texts)
    alone = np.stack([minilm.embed([t]).vectors[0] for t in texts[::10]])
    np.testing.assert_allclose(together.vectors[::10], alone, atol=2e-5)
    assert together.tokens == minilm.count_tokens(texts)
    assert minilm.embed([]).vectors.shape == (0, 384)


def test_minilm_is_deterministic(minilm) -> None:  # type: ignore[no-untyped-def]
    vector = minilm.embed(["hello world"]).vectors[0]
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    again = minilm.embed(["hello world"]).vectors[0]
    np.testing.assert_array_equal(vector, again)


def test_hashing_embedder_is_deterministic_and_lexical() -> None:
    embedder = HashingEmbedder(128)
    a, b, c = embedder.embed(["red apple pie", "red apple tart", "quantum field theory"]).vectors
    assert float(a @ b) > float(a @ c)
    np.testing.assert_array_equal(HashingEmbedder(128).embed(["red apple pie"]).vectors[0], a)
    assert embedder.model_id == "hash:128"


def test_bad_ids_and_dimensions_are_refused_by_name() -> None:
    with pytest.raises(UnknownModelError, match="local:minilm"):
        make_embedder("nope:thing")
    with pytest.raises(MemoryInputError, match="dimension"):
        HashingEmbedder(3)


def test_normalise_keeps_zero_rows() -> None:
    out = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
