"""Modules in a Ray actor, reached by handle: the remote-module contract without HTTP.

A :class:`ModuleHost` actor builds one agent per session from a run config, as a module
service does, and answers the same calls (``/v1/<kind>/<verb>``) with the same replies.
:class:`ActorClient` is a drop-in for :class:`~llmagentos.service.remote.ServiceClient`
under the remote modules (:class:`~llmagentos.service.remote.RemotePlanning` and the
rest), so an agent uses an actor's planner exactly as it uses a service's. The actor
lives where Ray places it (any node with a free CPU); calls are Ray method calls, so
there is no HTTP server, proxy or JSON on the way.

Example::

    planning, learning = actor_modules("examples/configs/taxi.toml", "planning", "learning")
    agent = Agent(perception, planning, execution, learning)   # no other change
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmagentos._json import jsonable
from llmagentos.config import RunConfig
from llmagentos.distributed.cluster import connect
from llmagentos.distributed.cluster_kernel import route_here
from llmagentos.distributed.pickling import check_serializable
from llmagentos.exceptions import ConfigError, LLMAgentOSError, ModelError, ModuleError
from llmagentos.types import Transition

if TYPE_CHECKING:
    from llmagentos.build import BuiltAgent

__all__ = ["ActorClient", "ModuleHost", "actor_modules"]

KINDS = ("perception", "planning", "execution", "learning")


class ModuleHost:
    """A Ray actor's state: one agent per session, built from ``config``.

    With a session store, every call's result is saved before its reply (as a module
    service does), so a host restarted by Ray (its node died, or it was killed) picks
    each session up where it was, and a call retried with its key is not applied twice.
    """

    def __init__(
        self,
        config: RunConfig,
        kinds: tuple[str, ...],
        max_sessions: int,
        state_store: str | None = None,
        state_secret: str | None = None,
    ) -> None:
        from llmagentos.service.pool import SessionPool
        from llmagentos.service.store import open_session_store

        route_here()  # model-backed modules share the cluster's kernel
        self.config = config
        self.kinds = kinds
        self._build().agent.close()  # a broken config fails at start, not on a call
        store = None
        if state_store is not None:
            store = open_session_store(
                state_store,
                secret=state_secret,
                namespace=f"llmagentos:actor-sessions:{config.name}",
            )
        self.pool = SessionPool(self._build, max_sessions=max_sessions, store=store)

    def _build(self) -> BuiltAgent:
        from llmagentos.build import build_agent

        return build_agent(self.config)

    async def call(
        self,
        kind: str,
        verb: str,
        session: str,
        payload: dict[str, Any],
        call_key: str | None = None,
    ) -> Any:
        """One module call; the reply a module service gives to the same request."""
        from llmagentos.service.pool import Replayed

        if kind not in self.kinds:
            raise ModuleError(kind, f"this host serves {', '.join(self.kinds)}")

        async def work(built: BuiltAgent) -> Any:
            module = built.agent.modules[KINDS.index(kind)]
            try:
                return await self._dispatch(kind, verb, module, payload)
            except (ModuleError, ModelError):
                raise
            except (LLMAgentOSError, TypeError, ValueError, KeyError, IndexError) as err:
                # The module refused the caller's value, as a module service answers 422.
                raise ModuleError(kind, f"{type(err).__name__}: {err}") from err

        result = await self.pool.run(_key(session), work, call_key)
        return result.content if isinstance(result, Replayed) else result

    async def _dispatch(self, kind: str, verb: str, module: Any, payload: dict[str, Any]) -> Any:
        if verb == "reset":
            observation = await module.areset(seed=payload.get("seed"))
            return {"observation": jsonable(observation) if kind == "execution" else None}
        if verb == "train":
            module.train(bool(payload["mode"]))
            return {"training": bool(payload["mode"])}
        if (kind, verb) == ("perception", "perceive"):
            return {"features": jsonable(await module.aperceive(payload["observation"]))}
        if (kind, verb) == ("planning", "decide"):
            decision = await module.adecide(payload["features"])
            scores = None if decision.scores is None else list(decision.scores)
            return {
                "action": jsonable(decision.action),
                "reason": decision.reason,
                "scores": scores,
            }
        if (kind, verb) == ("execution", "perform"):
            return (await module.aperform(payload["action"])).to_dict()
        if (kind, verb) == ("learning", "update"):
            report = await module.aupdate(Transition(**payload["transition"]))
            return {"report": jsonable(report)}
        raise ModuleError(kind, f"no call {verb!r}")

    async def qtable(self, session: str) -> dict[str, Any] | None:
        """The session's Q-table as ``QTable.to_dict()`` (``None``: no table)."""

        async def read(built: BuiltAgent) -> dict[str, Any] | None:
            return None if built.q_table is None else built.q_table.to_dict()

        found: dict[str, Any] | None = await self.pool.run(_key(session), read, None)
        return found

    async def drop(self, session: str) -> bool:
        return await self.pool.drop(_key(session))


def _key(session: str) -> Any:
    from llmagentos.service.store import SessionKey

    return SessionKey("", session)  # the actor's caller holds its handle: one tenant


class ActorClient:
    """The calls of :class:`~llmagentos.service.remote.ServiceClient`, to a
    :class:`ModuleHost` actor, for one session.

    Each call carries an idempotency key. A host that keeps its sessions in a store
    (``durable``) and dies mid-call is restarted by Ray; the call is sent again with
    its key until ``retry_for`` seconds have passed, and the host applies it once.
    """

    def __init__(
        self,
        actor: Any,
        *,
        session: str | None = None,
        durable: bool = False,
        retry_for: float = 60.0,
    ) -> None:
        self.actor = actor
        self.session = session or uuid.uuid4().hex
        self.durable = durable
        self.retry_for = retry_for
        self.retries = 0

    @staticmethod
    def _verb(kind: str, path: str) -> str:
        prefix = f"/v1/{kind}/"
        if not path.startswith(prefix):
            raise ModuleError(kind, f"not a call of {kind}: {path}")
        return path[len(prefix) :]

    def _lost(self, kind: str, err: BaseException, started: float) -> None:
        """Raise unless the call may be sent again (the host restarts with its sessions)."""
        if not self.durable:
            raise ModuleError(
                kind,
                f"the module host died and its sessions were in its memory ({err}); give "
                "actor_modules a state_store to keep them through a restart",
            ) from err
        if time.monotonic() - started > self.retry_for:
            raise ModuleError(kind, f"the module host did not come back: {err}") from err
        self.retries += 1

    def post(self, kind: str, path: str, **payload: Any) -> Any:
        import ray

        verb, key, started = self._verb(kind, path), uuid.uuid4().hex, time.monotonic()
        while True:
            ref = self.actor.call.remote(kind, verb, self.session, payload, key)
            try:
                return ray.get(ref)
            except _restartable(ray) as err:
                self._lost(kind, err, started)
                time.sleep(0.2)

    async def apost(self, kind: str, path: str, **payload: Any) -> Any:
        import ray

        verb, key, started = self._verb(kind, path), uuid.uuid4().hex, time.monotonic()
        while True:
            try:
                return await self.actor.call.remote(kind, verb, self.session, payload, key)
            except _restartable(ray) as err:
                self._lost(kind, err, started)
                await asyncio.sleep(0.2)

    def close(self) -> None:
        """Nothing to close: the actor outlives the client (see ``ray.kill``)."""

    async def aclose(self) -> None:
        self.close()


def _restartable(ray: Any) -> tuple[type[BaseException], ...]:
    return (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


def actor_modules(
    config: RunConfig | str | Path,
    *kinds: str,
    address: str | None = None,
    cpus: float = 1.0,
    max_sessions: int = 1024,
    state_store: str | None = None,
    state_secret: str | None = None,
    ray_options: Mapping[str, Any] | None = None,
    actor: Any = None,
) -> list[Any]:
    """Remote modules of ``kinds`` in a :class:`ModuleHost` actor, sharing one session.

    Args:
        config: the run config whose agent the actor builds (one per session).
        address: the Ray cluster (see :func:`~llmagentos.distributed.cluster.connect`).
        cpus: CPUs the actor reserves.
        state_store: keep sessions in this store (a ``redis://`` URL, or a SQLite file
            every node can reach): Ray then restarts a dead host, on another node if its
            node is gone, and its sessions go on from their last call. Needs
            ``state_secret`` (the store is sealed with it).
        ray_options: more Ray actor options (``scheduling_strategy``, ``resources``...).
        actor: an actor started before (``remote_modules`` of another session on it);
            a new one by default.

    Raises:
        ConfigError: an unknown kind, or a store without a secret.
        NotSerializable: the config cannot be sent.
    """
    from llmagentos.config import load_config
    from llmagentos.service.remote import _CLASSES

    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ConfigError("kinds", f"unknown or no module kinds {unknown}; from {list(KINDS)}")
    if state_store is not None and not state_secret:
        raise ConfigError("state_secret", "a session store is sealed with a secret: give one")
    run_config = config if isinstance(config, RunConfig) else load_config(config)
    durable = state_store is not None
    if actor is None:
        check_serializable(run_config, f"the config of {run_config.name!r}")
        ray = connect(address)
        host = ray.remote(num_cpus=cpus, max_restarts=-1 if durable else 0)(ModuleHost)
        if ray_options:
            host = host.options(**ray_options)
        actor = host.remote(run_config, tuple(KINDS), max_sessions, state_store, state_secret)
    client = ActorClient(actor, durable=durable)
    return [_CLASSES[kind](client) for kind in kinds]
