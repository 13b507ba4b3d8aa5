"""The kernel across a Ray cluster: one scheduler for the agents on every node.

::

    kernel = start_cluster_kernel(policy="fair", batch_window=0.01)
    agent.run(100, seed=0, backend="ray", workers=8, train=False)   # LLM planners included
    kernel.state()    # backends, hosts per node, per-agent usage, waits and budgets

A :class:`KernelActor` (one per cluster, a named detached actor) holds a
:class:`~llmagentos.kernel.scheduler.Scheduler`. A Ray worker running llmagentos code
(episode workers, module hosts, Serve replicas) routes its kernel handles there
(:func:`route_here`), so an agent's model call on any node waits its turn in that one
scheduler: one fairness order, one budget per agent across all its workers, one
deadline clock. Backends are made from model ids on first use, as in one process:

* the embedded model (``local:...``) runs on a :class:`~llmagentos.distributed.node_models.NodePool`
  of per-node hosts: loaded once per node, on the nodes that call it; replies cached
  in the kernel, so a repeated prompt costs no host a call;
* network providers (``openai:...``, URLs) are called from the kernel actor itself,
  with the retry and cache stack of one process;
* :meth:`ClusterKernel.add_backend` adds a backend of one's own (a factory, made on
  each node or once).

Batching happens where the backend can batch: the scheduler groups the waiting calls
of every node's agents into one ``abatch`` on the host.

The kernel actor and hosts are detached: they outlive the driver that started them
and serve the next one (a loaded model stays loaded). :func:`stop_cluster_kernel`
ends them. If the kernel actor dies, Ray restarts it (its counters start again at
zero) and the next call goes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import pickle
from collections.abc import Callable
from typing import Any

from llmagentos.distributed.node_models import CALLER_NODE, NAMESPACE, NodePool, awaited
from llmagentos.exceptions import ConfigError, ModelError, ModelTimeoutError
from llmagentos.kernel.default import backend_stack, route_models
from llmagentos.kernel.handle import ScheduledModel
from llmagentos.kernel.scheduler import Scheduler
from llmagentos.llm.base import Model
from llmagentos.llm.cache import CachedModel
from llmagentos.llm.local_batch import DEFAULT_MAX_BATCH
from llmagentos.llm.models import make_model
from llmagentos.llm.types import ModelRequest, ModelResponse

__all__ = [
    "KERNEL_NAME",
    "ClusterKernel",
    "ClusterModel",
    "KernelActor",
    "route_here",
    "start_cluster_kernel",
    "stop_cluster_kernel",
]

KERNEL_NAME = "llmagentos-kernel"
_GRACE = 30.0  # seconds past a call's deadline before its caller gives up on the kernel


class KernelActor:
    """A Ray actor's state: the cluster's scheduler and its backends."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.scheduler = Scheduler(**settings)
        self.pools: dict[str, NodePool] = {}
        self.custom: dict[str, tuple[Callable[[], Model], bool, int]] = {}
        self._adding: dict[str, asyncio.Lock] = {}
        self._handles: dict[tuple[str, str, int, float], ScheduledModel] = {}

    # -- backends -------------------------------------------------------------------------

    def add_backend(
        self, name: str, factory: Callable[[], Model], per_node: bool, max_in_flight: int
    ) -> bool:
        """Make backend ``name`` with ``factory`` when first called (see ClusterKernel)."""
        if name in self.scheduler.backends or name in self.custom:
            raise ConfigError("backend", f"{name!r} is already added")
        self.custom[name] = (factory, per_node, max_in_flight)
        return True

    async def _ensure(self, name: str, node: str | None) -> None:
        if name in self.scheduler.backends:
            return
        lock = self._adding.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self.scheduler.backends:
                return
            factory, per_node, in_flight = self.custom.get(name) or self._default_for(name)
            if not per_node:
                model = await asyncio.to_thread(factory)
                self.scheduler.add_backend(name, model, max_in_flight=in_flight)
                return
            pool = NodePool(
                name, factory, per_host=in_flight, on_capacity=functools.partial(self._resize, name)
            )
            self.pools[name] = pool
            await pool.start(node or _this_node())
            backend: Model = CachedModel(pool) if name.startswith("local:") else pool
            slots = max(1, len(pool.nodes)) * in_flight
            self.scheduler.add_backend(name, backend, max_in_flight=slots)

    def _resize(self, name: str, slots: int) -> None:
        if name in self.scheduler.backends:  # else it is added with the pool's slots
            self.scheduler.set_max_in_flight(name, slots)

    @staticmethod
    def _default_for(name: str) -> tuple[Callable[[], Model], bool, int]:
        if name.startswith("local:"):
            # The embedded model: loaded on each calling node, whose batch engine decodes
            # up to DEFAULT_MAX_BATCH calls together.
            return functools.partial(make_model, name), True, DEFAULT_MAX_BATCH
        # A network provider, built once here (an unknown id fails here, naming the
        # forms that work) and called from the kernel actor.
        model, in_flight = backend_stack(name)
        return (lambda: model), False, in_flight

    # -- calls ----------------------------------------------------------------------------

    def _handle(
        self, backend: str, agent: str, priority: int, weight: float, budget: int | None
    ) -> ScheduledModel:
        key = (backend, agent, priority, weight)
        handle = self._handles.get(key)
        if handle is None:
            handle = self._handles[key] = self.scheduler.model_for(
                agent, backend, priority=priority, weight=weight
            )
        if budget is not None:
            self.scheduler.model_for(agent, backend, token_budget=budget)
        return handle

    async def request(
        self,
        backend: str,
        agent: str,
        *,
        priority: int,
        weight: float,
        token_budget: int | None,
        node: str | None,
        request: ModelRequest,
    ) -> tuple[str, Any]:
        """One agent's call: ``("ok", reply)`` or ``("error", the error to raise)``."""
        token = CALLER_NODE.set(node)
        try:
            await self._ensure(backend, node)
            handle = self._handle(backend, agent, priority, weight, token_budget)
            return "ok", await handle.arequest(request)
        except Exception as err:  # handed back whole, not wrapped in Ray's RayTaskError
            return "error", _sendable(err, backend)
        finally:
            CALLER_NODE.reset(token)

    async def state(self) -> dict[str, Any]:
        """The scheduler's state, with each pooled backend's hosts (node, pid, calls)."""
        found = self.scheduler.state()
        found["settings"] = self.settings
        for name, pool in self.pools.items():
            if name in found["backends"]:
                found["backends"][name]["hosts"] = await pool.hosts()
                found["backends"][name]["hosts_lost"] = pool.lost
        return found

    def hosts(self) -> list[str]:
        """The names of every host actor this kernel started (to end them)."""
        from llmagentos.distributed.node_models import host_name

        return [host_name(name, node) for name, pool in self.pools.items() for node in pool.nodes]


def _sendable(err: Exception, backend: str) -> Exception:
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return ModelError(f"{type(err).__name__}: {err}", model=backend)
    return err


def _this_node() -> str:
    import ray

    node: str = ray.get_runtime_context().get_node_id()
    return node


def _kernel_actor(settings: dict[str, Any] | None = None) -> Any:
    """The cluster's kernel actor, started with ``settings`` if there is none yet."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=-1)(KernelActor)
    return actor.options(
        name=KERNEL_NAME,
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        max_concurrency=10_000,  # an async actor: every caller's call waits in its scheduler
    ).remote(settings or {})


class ClusterModel(Model):
    """An agent's handle on the cluster's kernel (what :func:`route_here` makes).

    Holds only names, so it pickles anywhere; each call goes to the kernel actor with
    the caller's node, and waits there under the scheduler's rules.
    """

    def __init__(
        self,
        model: str,
        *,
        agent: str,
        priority: int = 0,
        weight: float = 1.0,
        token_budget: int | None = None,
    ) -> None:
        self.model_id = model
        self.agent = agent
        self.priority = priority
        self.weight = weight
        self.token_budget = token_budget
        self._actor: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_actor": None}

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        import ray

        if self._actor is None:
            self._actor = _kernel_actor()
        timeout = (request.settings.timeout or 120.0) + _GRACE
        ref = self._actor.request.remote(
            self.model_id,
            self.agent,
            priority=self.priority,
            weight=self.weight,
            token_budget=self.token_budget,
            node=_this_node(),
            request=request,
        )
        try:
            status, value = await asyncio.wait_for(awaited(ref), timeout)
        except asyncio.CancelledError:
            ray.cancel(ref)  # frees its place in the scheduler at once
            raise
        except TimeoutError:
            ray.cancel(ref)
            raise ModelTimeoutError(
                f"the cluster's kernel did not answer within {timeout:g} s", model=self.model_id
            ) from None
        except ray.exceptions.RayActorError as err:
            self._actor = None  # restarted by Ray: the next call finds the new one
            raise ModelError(f"the cluster's kernel died: {err}", model=self.model_id) from err
        if status == "error":
            raise value
        reply: ModelResponse = value
        return reply

    async def abatch(self, requests: Any) -> list[ModelResponse]:
        """All at once: the kernel's scheduler batches them if the backend can."""
        return list(await asyncio.gather(*(self.arequest(r) for r in requests)))

    def __repr__(self) -> str:
        return f"ClusterModel({self.model_id!r}, agent={self.agent!r})"


def route_here() -> None:
    """Make this process's kernel handles on the cluster's kernel (called in workers)."""
    route_models(ClusterModel)


class ClusterKernel:
    """The driver's view of the cluster's kernel (from :func:`start_cluster_kernel`)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def add_backend(
        self,
        name: str,
        factory: Callable[[], Model],
        *,
        per_node: bool = True,
        max_in_flight: int = 1,
    ) -> None:
        """Serve backend ``name`` from ``factory``'s model, made on first call.

        Args:
            per_node: make it on each calling node (a host actor there), with
                ``max_in_flight`` calls at once per node; else once, in the kernel actor.

        Raises:
            NotSerializable: ``factory`` cannot be sent to the cluster.
            ConfigError: a backend of that name exists.
        """
        import ray

        from llmagentos.distributed.pickling import check_serializable

        if max_in_flight < 1:
            raise ConfigError("max_in_flight", f"must be >= 1, got {max_in_flight!r}")
        check_serializable(factory, f"the factory of backend {name!r}")
        try:
            ray.get(self.actor.add_backend.remote(name, factory, per_node, max_in_flight))
        except ray.exceptions.RayTaskError as err:
            raise err.cause if isinstance(err.cause, Exception) else err from None

    def state(self) -> dict[str, Any]:
        """Backends (with hosts per node), agents' usage, waits and budgets."""
        import ray

        found: dict[str, Any] = ray.get(self.actor.state.remote())
        return found


def start_cluster_kernel(
    address: str | None = None,
    *,
    route_driver: bool = True,
    **settings: Any,
) -> ClusterKernel:
    """The cluster's kernel, started with ``settings`` (the
    :class:`~llmagentos.kernel.scheduler.Scheduler`'s: ``policy``, ``default_timeout``,
    ``batch_size``, ``batch_window``) unless it runs already (then as it runs).

    Args:
        route_driver: make this process's handles on it too, so agents built here
            (sent to workers or not) share it.
    """
    from llmagentos.distributed.cluster import connect

    Scheduler(**settings)  # bad settings fail here, naming the field
    connect(address)
    kernel = ClusterKernel(_kernel_actor(settings))
    kernel.state()  # it is up
    if route_driver:
        route_here()
    return kernel


def stop_cluster_kernel(address: str | None = None) -> bool:
    """End the cluster's kernel and its model hosts; False if none was running.

    This process's handles go back to its own scheduler.
    """
    import ray

    from llmagentos.distributed.cluster import connect

    connect(address)
    route_models(None)
    try:
        actor: Any = ray.get_actor(KERNEL_NAME, namespace=NAMESPACE)
    except ValueError:
        return False
    names: list[str] = ray.get(actor.hosts.remote())
    for name in names:
        with contextlib.suppress(ValueError):  # gone already
            ray.kill(ray.get_actor(name, namespace=NAMESPACE))
    ray.kill(actor)
    return True
