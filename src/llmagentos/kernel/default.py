"""The process-wide kernel: one scheduler whose backends are made from model ids on first use.

Agents name a model (``local:smollm2``, ``openai:gpt-4o-mini``, a server URL) and get a
handle from :func:`agent_model`; every agent naming the same id shares one backend, one
response cache and one concurrency limit. The backend stack is::

    CachedModel(RetryModel(provider))   # network providers
    CachedModel(provider)               # the embedded model: nothing to retry

The embedded model decodes up to ``max_batch`` calls together (continuous batching in
:mod:`llmagentos.llm.local_batch`: 8 by default), so its backend admits that many calls
in flight, each its own sequence, and the scheduler's queue decides who gets the next
free one; with ``batching=False`` it admits one. Network backends admit four.

Each handle is a :class:`~llmagentos.durable.model.DurableModel` around the agent's
:class:`~llmagentos.kernel.handle.ScheduledModel`: inside a durable run its calls are
journaled (a resumed run gets the recorded replies); outside one it only delegates.

A process may send its handles elsewhere with :func:`route_models`: on a Ray cluster
(:mod:`llmagentos.distributed.cluster_kernel`) every worker's handles go to the
cluster's one kernel, so its agents share one scheduler and the embedded model is
loaded once per node, not once per worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from llmagentos.kernel.embeddings import AgentEmbedder, EmbeddingService
from llmagentos.kernel.scheduler import Scheduler
from llmagentos.llm.base import Model
from llmagentos.llm.cache import CachedModel
from llmagentos.llm.models import make_model
from llmagentos.llm.retry import RetryModel

__all__ = [
    "ModelRoute",
    "agent_embedder",
    "agent_model",
    "backend_stack",
    "embedding_service",
    "is_process_kernel",
    "kernel",
    "kernel_state",
    "reset_kernel",
    "route_models",
    "scheduled_handle",
]

ModelRoute = Callable[..., Model]
"""Makes an agent's handle elsewhere: ``route(model_id, agent=, priority=, weight=,
token_budget=)`` returns a model whose calls are scheduled there."""

_lock = threading.Lock()
_kernel: list[Scheduler] = []
_embeddings: list[EmbeddingService] = []
_route: list[ModelRoute] = []


def kernel() -> Scheduler:
    """The process-wide scheduler (created on first use)."""
    with _lock:
        if not _kernel:
            _kernel.append(Scheduler())
        return _kernel[0]


def kernel_state() -> dict[str, Any] | None:
    """The process kernel's :meth:`~Scheduler.state`, or ``None`` if none was made yet."""
    with _lock:
        scheduler = _kernel[0] if _kernel else None
    return None if scheduler is None else scheduler.state()


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
        # Not abatch-grouped (supports_batching is False): the engine batches whatever
        # calls run at once, and each keeps its own cancellation and deadline.
        return CachedModel(provider), max(1, int(getattr(provider, "max_batch", 1)))
    return CachedModel(RetryModel(provider)), 4


def route_models(route: ModelRoute | None) -> None:
    """Make this process's handles with ``route`` (``None``: with its own scheduler again).

    Handles made before keep where they were made.
    """
    with _lock:
        _route.clear()
        if route is not None:
            _route.append(route)


def is_process_kernel(scheduler: object) -> bool:
    """Whether ``scheduler`` is this process's kernel (whose handles any process can
    make again from their model id, agent and limits)."""
    return bool(_kernel) and scheduler is _kernel[0]


def scheduled_handle(
    model: str,
    *,
    agent: str,
    priority: int = 0,
    weight: float = 1.0,
    token_budget: int | None = None,
) -> Model:
    """``agent``'s scheduled handle on ``model`` (no journal): through the route if this
    process has one, else on the process-wide scheduler (adding the backend on first use)."""
    route = _route[0] if _route else None
    if route is not None:
        return route(
            model, agent=agent, priority=priority, weight=weight, token_budget=token_budget
        )
    scheduler = kernel()
    with _lock:
        if model not in scheduler.backends:
            backend, in_flight = backend_stack(model)
            scheduler.add_backend(model, backend, max_in_flight=in_flight)
    return scheduler.model_for(
        agent, model, priority=priority, weight=weight, token_budget=token_budget
    )


def agent_model(
    model: str | Model, *, agent: str, priority: int = 0, token_budget: int | None = None
) -> Model:
    """A model handle for ``agent``: its calls go through the kernel's scheduler, and
    inside a durable run through its journal.

    An already-made :class:`Model` (a test double, a custom stack) is returned as it is.
    """
    if isinstance(model, Model):
        return model
    from llmagentos.durable.model import DurableModel  # the journal sits above the kernel

    handle = scheduled_handle(model, agent=agent, priority=priority, token_budget=token_budget)
    return DurableModel(handle)
