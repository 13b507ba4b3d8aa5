"""Any OpenAI-compatible ``/v1/embeddings`` server (OpenAI, vLLM, Ollama, llama.cpp, TEI)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from llmagentos._version import __version__
from llmagentos.embeddings.base import Embedder, Embeddings, normalise
from llmagentos.exceptions import (
    ModelConnectionError,
    ModelHTTPError,
    ModelOutputError,
    ModelTimeoutError,
)
from llmagentos.llm.openai_compat import parse_retry_after
from llmagentos.llm.testing import check_network_allowed

__all__ = ["OpenAICompatEmbedder"]


class OpenAICompatEmbedder(Embedder):
    """Embeddings from ``POST {base_url}/embeddings``.

    Args:
        model: the server's model name.
        base_url: e.g. ``http://127.0.0.1:8080/v1``.
        dimension: the vectors' length; ``None`` asks the server once (one embedding
            of a short text) on first use.
        api_key: a bearer token (default: the ``api_key_env`` variable, if set).
        max_batch: the most texts per request. ``1`` for servers whose batches are
            wrong: llama-cpp-python's server (0.3) gives a model without a pooling
            layer other vectors for the second and later texts of a batch than for
            the same text alone.
        transport: an httpx transport, for tests of what this client sends.
    """

    max_batch = 64

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        model_id: str | None = None,
        dimension: int | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_batch: int = 64,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.model = model
        self.max_batch = max_batch
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id or f"{self.base_url}#{model}"
        headers = {"User-Agent": f"llmagentos/{__version__}"}
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._transport = transport
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=5.0), transport=transport
        )
        self._dimension = dimension

    @property
    def dimension(self) -> int:  # type: ignore[override]
        if self._dimension is None:
            self._dimension = int(self.embed(["dimension probe"]).vectors.shape[1])
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Embeddings:
        if not texts:
            return Embeddings(np.zeros((0, self._dimension or 0), dtype=np.float32), 0)
        if len(texts) > self.max_batch:
            parts = [
                self.embed(texts[i : i + self.max_batch])
                for i in range(0, len(texts), self.max_batch)
            ]
            return Embeddings(
                np.concatenate([p.vectors for p in parts]), sum(p.tokens for p in parts)
            )
        if self._transport is None:
            check_network_allowed(self.model_id)
        url = f"{self.base_url}/embeddings"
        try:
            reply = self._client.post(url, json={"model": self.model, "input": list(texts)})
        except httpx.TimeoutException as err:
            raise ModelTimeoutError(
                f"{type(err).__name__} talking to {url}", model=self.model_id
            ) from err
        except httpx.HTTPError as err:
            raise ModelConnectionError(
                f"{type(err).__name__} talking to {url}: {err}", model=self.model_id
            ) from err
        if reply.status_code >= 400:
            raise ModelHTTPError(
                reply.status_code,
                reply.text[:2000],
                model=self.model_id,
                retry_after=parse_retry_after(reply.headers.get("retry-after")),
            )
        return self._parse(reply, len(texts))

    def _parse(self, reply: httpx.Response, count: int) -> Embeddings:
        try:
            data: Any = reply.json()
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            vectors = (
                np.stack([_pooled(row["embedding"]) for row in rows]) if rows else np.zeros((0, 0))
            )
            tokens = int((data.get("usage") or {}).get("prompt_tokens", 0))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ModelOutputError(f"not an embeddings reply: {err}", model=self.model_id) from err
        if vectors.ndim != 2 or vectors.shape[0] != count:
            raise ModelOutputError(
                f"asked for {count} embeddings, got an array of shape {vectors.shape}",
                model=self.model_id,
            )
        if self._dimension is not None and vectors.shape[1] != self._dimension:
            raise ModelOutputError(
                f"vectors of {vectors.shape[1]} dimensions, expected {self._dimension}",
                model=self.model_id,
            )
        return Embeddings(normalise(vectors), tokens)

    def close(self) -> None:
        self._client.close()


def _pooled(embedding: Any) -> Any:
    """One vector per text. A server that returns one vector per token (llama.cpp's
    server for a model without a pooling layer) gets the mean over its tokens, the
    pooling sentence embedders use."""
    array = np.asarray(embedding, dtype=np.float32)
    if array.ndim == 2:
        return array.mean(axis=0)
    if array.ndim != 1:
        raise ValueError(f"an embedding of shape {array.shape}")
    return array
