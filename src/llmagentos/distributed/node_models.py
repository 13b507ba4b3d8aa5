"""A model loaded once per node: host actors, and the pool the cluster's kernel calls.

A :class:`ModelHost` is a Ray actor pinned to one node that loads a backend's model
(the embedded SmolLM2, a GGUF file, a user's factory) and answers calls. A
:class:`NodePool` is the kernel's backend for such a model: a
:class:`~llmagentos.llm.base.Model` whose calls go to the host on the caller's node
when it has a free slot, else to the least busy host. The first call from a node
starts that node's host, so a model is loaded on the nodes whose agents use it, once
each, however many workers those nodes run.

A host whose node died (or that was killed) is dropped and the call goes to another
host; the pool tells the scheduler its new capacity (slots per host x hosts), so the
scheduler's fairness, budgets and deadlines keep covering every call.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmagentos.exceptions import ModelError
from llmagentos.llm.base import Model
from llmagentos.llm.types import ModelRequest, ModelResponse

__all__ = ["CALLER_NODE", "NAMESPACE", "ModelHost", "NodePool", "awaited", "host_name"]

NAMESPACE = "llmagentos"
"""The Ray namespace of the kernel's actors, so every driver on the cluster finds them."""

CALLER_NODE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "llmagentos_caller_node", default=None
)
"""The node of the agent whose call the kernel is running (set by the kernel actor)."""

_MAX_HOST_FAILURES = 3  # hosts lost during one call before it fails


class ModelHost:
    """A Ray actor's state: one backend model, loaded once on this node."""

    def __init__(self, factory: Callable[[], Model]) -> None:
        started = time.monotonic()
        self.model = factory()
        self.load_seconds = time.monotonic() - started
        self.calls = 0

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        return await self.model.arequest(request)

    async def batch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        self.calls += len(requests)
        return await self.model.abatch(requests)

    def info(self) -> dict[str, Any]:
        import ray

        return {
            "model": self.model.model_id,
            "supports_batching": self.model.supports_batching,
            "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "load_seconds": round(self.load_seconds, 3),
            "calls": self.calls,
        }


async def awaited(ref: Any) -> Any:
    """A Ray object ref as a coroutine (for ``asyncio.wait_for``)."""
    return await ref


def _alive_nodes() -> set[str]:
    import ray

    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return {node["NodeID"] for node in nodes if node.get("Alive")}


def host_name(backend: str, node: str) -> str:
    """The named actor of ``backend``'s host on ``node`` (one per pair, cluster-wide)."""
    digest = hashlib.sha256(backend.encode()).hexdigest()[:12]
    return f"llmagentos-model-{digest}-{node[:16]}"


@dataclass
class _Host:
    node: str
    handle: Any
    running: int = 0


class NodePool(Model):
    """The kernel's backend for a model that runs on per-node hosts (see module docs).

    Args:
        name: the backend (its model id).
        factory: makes the model on a host; pickled to each node.
        per_host: calls a host runs at once (1 for llama.cpp: it runs one at a time).
        on_capacity: told the slots of all live hosts together whenever that changes.
    """

    def __init__(
        self,
        name: str,
        factory: Callable[[], Model],
        *,
        per_host: int = 1,
        on_capacity: Callable[[int], None] | None = None,
    ) -> None:
        self.model_id = name
        self.factory = factory
        self.per_host = per_host
        self.on_capacity = on_capacity
        self._hosts: dict[str, _Host] = {}
        self._starting: dict[str, asyncio.Future[_Host]] = {}
        self.lost = 0

    async def start(self, node: str) -> dict[str, Any]:
        """Start (or find) the host on ``node``; its :meth:`ModelHost.info`."""
        host = await self._host_on(node)
        info: dict[str, Any] = await host.handle.info.remote()
        self.supports_batching = bool(info["supports_batching"])
        return info

    @property
    def nodes(self) -> list[str]:
        return list(self._hosts)

    async def hosts(self) -> list[dict[str, Any]]:
        """Each live host's :meth:`ModelHost.info` (with its running calls)."""
        found = []
        for host in list(self._hosts.values()):
            try:
                info = await asyncio.wait_for(host.handle.info.remote(), 5.0)
            except Exception:
                continue
            found.append(info | {"running": host.running})
        return found

    async def _host_on(self, node: str) -> _Host:
        if node in self._hosts:
            return self._hosts[node]
        pending = self._starting.get(node)
        if pending is None:
            pending = self._starting[node] = asyncio.get_running_loop().create_future()
            try:
                host = _Host(node, await self._launch(node))
            except BaseException as err:
                self._starting.pop(node, None)
                pending.set_exception(err)
                pending.exception()  # retrieved: the caller gets it raised below
                raise
            self._starting.pop(node, None)
            self._hosts[node] = host
            pending.set_result(host)
            self._tell_capacity()
            return host
        return await asyncio.shield(pending)

    async def _launch(self, node: str) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # No CPU reserved: the host serves the agents of the workers that hold the CPUs.
        # Detached: it outlives whichever driver's call started it (see stop_cluster_kernel).
        actor = ray.remote(num_cpus=0, max_restarts=0)(ModelHost)
        handle: Any = actor.options(
            max_concurrency=64,
            name=host_name(self.model_id, node),
            namespace=NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote(self.factory)
        await asyncio.wait_for(awaited(handle.info.remote()), 600)  # the model is loaded
        return handle

    def _tell_capacity(self) -> None:
        if self.on_capacity is not None:
            self.on_capacity(max(1, len(self._hosts)) * self.per_host)

    def _drop(self, host: _Host) -> None:
        if self._hosts.get(host.node) is host:
            del self._hosts[host.node]
            self.lost += 1
            self._tell_capacity()

    async def _pick(self, dead: set[str]) -> _Host:
        """The caller's node's host if free (started on first use), else the least busy."""
        caller = CALLER_NODE.get()
        if caller is not None and caller not in dead:
            host = self._hosts.get(caller)
            if host is None or host.running < self.per_host:
                return host or await self._host_on(caller)
        live = [h for h in self._hosts.values() if h.node not in dead]
        if live:
            return min(live, key=lambda h: h.running)
        for node in sorted(_alive_nodes() - dead):  # none left here: any live node
            return await self._host_on(node)
        raise ModelError("no live Ray node can run this model", model=self.model_id)

    async def _call(self, send: Callable[[Any], Any]) -> Any:
        import ray

        dead: set[str] = set()
        for attempt in range(1, _MAX_HOST_FAILURES + 1):
            host = await self._pick(dead)
            host.running += 1
            try:
                return await send(host.handle)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as err:
                # The host (or its node) is gone; the call never ran there, or its reply
                # is lost: run it again on a new host (on a live node). A model call
                # changes nothing, so running it twice is safe; the caller sees one reply.
                self._drop(host)
                if host.node not in _alive_nodes():
                    dead.add(host.node)
                if attempt == _MAX_HOST_FAILURES:
                    raise ModelError(f"model hosts kept dying: {err}", model=self.model_id) from err
            except ray.exceptions.RayTaskError as err:
                cause = err.cause if isinstance(err.cause, Exception) else err
                raise cause from None
            finally:
                host.running -= 1
        raise AssertionError("unreachable")

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        reply: ModelResponse = await self._call(lambda h: h.request.remote(request))
        return reply

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        replies: list[ModelResponse] = await self._call(lambda h: h.batch.remote(list(requests)))
        return replies

    async def aclose(self) -> None:
        """Hosts stay: other kernels' calls may use them (``stop_cluster_kernel`` ends them)."""
