"""Embedders: texts to unit vectors, made from ids like models are.

=============================  ====================================================
id                             embedder
=============================  ====================================================
``local:minilm``               all-MiniLM-L6-v2 int8 on onnxruntime (``[memory]``)
``hash:<dimension>``           feature hashing, no model (tests, lexical control)
``openai:<model>``             OpenAI's ``/v1/embeddings`` (``OPENAI_API_KEY``)
``http(s)://host/v1#<model>``  any OpenAI-compatible embeddings server
=============================  ====================================================
"""

from __future__ import annotations

from typing import Any

from llmagentos.embeddings.base import Embedder, Embeddings, Vectors, normalise
from llmagentos.exceptions import UnknownModelError

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "Embeddings",
    "Vectors",
    "make_embedder",
    "normalise",
]

DEFAULT_EMBEDDER = "local:minilm"
_FORMS = ["local:minilm", "hash:<dimension>", "openai:<model>", "http://host:port/v1#<model>"]


def make_embedder(embedder_id: str = DEFAULT_EMBEDDER, **kwargs: Any) -> Embedder:
    """The embedder for ``embedder_id`` (see the table above).

    Raises:
        UnknownModelError: no embedder has that id; lists the forms that work.
        MissingExtraError: the embedded default's packages are not installed.
    """
    prefix, sep, rest = embedder_id.partition(":")
    if embedder_id in ("local:minilm", "local:all-MiniLM-L6-v2"):
        from llmagentos.embeddings.onnx import MiniLMEmbedder

        return MiniLMEmbedder(**kwargs)
    if prefix == "hash" and rest.isdigit():
        from llmagentos.embeddings.hashing import HashingEmbedder

        return HashingEmbedder(int(rest))
    if prefix in ("openai", "http", "https") and sep and rest:
        from llmagentos.embeddings.openai_compat import OpenAICompatEmbedder

        if prefix == "openai":
            return OpenAICompatEmbedder(
                rest, base_url="https://api.openai.com/v1", model_id=embedder_id, **kwargs
            )
        base, _, name = embedder_id.partition("#")
        return OpenAICompatEmbedder(
            name or "default", base_url=base, model_id=embedder_id, **kwargs
        )
    raise UnknownModelError(embedder_id, _FORMS)
