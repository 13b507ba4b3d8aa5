"""The process-wide kernel: one scheduler whose backends are made from model ids on first use.

Agents name a model (``local:smollm2``, ``openai:gpt-4o-mini``, a server URL) and get a
handle from :func:`agent_model`; every agent naming the same id shares one backend, one
response cache and one concurrency limit. The backend stack is::

    CachedModel(RetryModel(provider))   # network providers
    CachedModel(provider)               # the embedded model: nothing to retry

The embedded model runs one call at a time (llama.cpp serializes a loaded model), so
its backend admits one request in flight; network backends admit four.

Each handle is a :class:`~llmagentos.durable.model.DurableModel` around the agent's
:class:`~llmagentos.kernel.handle.ScheduledModel`: inside a durable run its calls are
journaled (a resumed run gets the recorded replies); outside one it only delegates.
"""

from __future__ import annotations

import threading
from typing import Any

from llmagentos.kernel.embeddings import AgentEmbedder, EmbeddingService
from llmagentos.kernel.scheduler import Scheduler
from llmagentos.llm.base import Model
from llmagentos.llm.cache import CachedModel
from llmagentos.llm.models import make_model
from llmagentos.llm.retry import RetryModel

__all__ = [
    "agent_embedder",
    "agent_model",
    "backend_stack",
    "embedding_service",
    "kernel",
    "reset_kernel",
]

_lock = threading.Lock()
_kernel: list[Scheduler] = []
_embeddings: list[EmbeddingService] = []


def kernel() -> Scheduler:
    """The process-wide scheduler (created on first use)."""
    with _lock:
        if not _kernel:
            _kernel.append(Scheduler())
        return _kernel[0]


def embedding_service() -> EmbeddingService:
    """The process-wide embedding service (created on first use)."""
    with _lock:
        if not _embeddings:
            _embeddings.append(EmbeddingService())
        return _embeddings[0]


def agent_embedder(
    embedder: str = "local:minilm", *, agent: str, token_budget: int | None = None
) -> AgentEmbedder:
    """An embedder handle for ``agent``: batched, cached and accounted by the kernel."""
    return embedding_service().embedder_for(agent, embedder, token_budget=token_budget)


def reset_kernel() -> None:
    """Close the process-wide scheduler and embedding service; the next calls make new ones."""
    with _lock:
        if _kernel:
            _kernel.pop().close()
        if _embeddings:
            _embeddings.pop().close()


def backend_stack(model_id: str, **model_kwargs: Any) -> tuple[Model, int]:
    """The wrapped backend model for ``model_id`` and how many calls it runs at once."""
    provider = make_model(model_id, **model_kwargs)
    if model_id.startswith("local:"):
        return CachedModel(provider), 1
    return CachedModel(RetryModel(provider)), 4


def agent_model(
    model: str | Model, *, agent: str, priority: int = 0, token_budget: int | None = None
) -> Model:
    """A model handle for ``agent``: its calls go through the kernel's scheduler, and
    inside a durable run through its journal.

    An already-made :class:`Model` (a test double, a custom stack) is returned as it is.
    """
    if isinstance(model, Model):
        return model
    scheduler = kernel()
    with _lock:
        if model not in scheduler.backends:
            backend, in_flight = backend_stack(model)
            scheduler.add_backend(model, backend, max_in_flight=in_flight)
    from llmagentos.durable.model import DurableModel  # the journal sits above the kernel

    handle = scheduler.model_for(agent, model, priority=priority, token_budget=token_budget)
    return DurableModel(handle)
