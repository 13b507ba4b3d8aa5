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

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmagentos._json import jsonable
from llmagentos.config import RunConfig
from llmagentos.distributed.cluster import connect
from llmagentos.distributed.pickling import check_serializable
from llmagentos.exceptions import ConfigError, LLMAgentOSError, ModelError, ModuleError
from llmagentos.types import Transition

if TYPE_CHECKING:
    from llmagentos.build import BuiltAgent

__all__ = ["ActorClient", "ModuleHost", "actor_modules"]

KINDS = ("perception", "planning", "execution", "learning")


class ModuleHost:
    """A Ray actor's state: one agent per session, built from ``config``."""

    def __init__(self, config: RunConfig, kinds: tuple[str, ...], max_sessions: int) -> None:
        self.config = config
        self.kinds = kinds
        self.max_sessions = max_sessions
        self.sessions: dict[str, BuiltAgent] = {}
        self._build().agent.close()  # a broken config fails at start, not on a call

    def _build(self) -> BuiltAgent:
        from llmagentos.build import build_agent

        return build_agent(self.config)

    def _agent(self, session: str) -> Any:
        built = self.sessions.get(session)
        if built is None:
            if len(self.sessions) >= self.max_sessions:
                raise ModuleError("session", f"this host holds {self.max_sessions} sessions")
            built = self.sessions[session] = self._build()
        return built.agent

    async def call(self, kind: str, verb: str, session: str, payload: dict[str, Any]) -> Any:
        """One module call; the reply a module service gives to the same request."""
        if kind not in self.kinds:
            raise ModuleError(kind, f"this host serves {', '.join(self.kinds)}")
        module = self._agent(session).modules[KINDS.index(kind)]
        try:
            return await self._dispatch(kind, verb, module, payload)
        except (ModuleError, ModelError):
            raise
        except (LLMAgentOSError, TypeError, ValueError, KeyError, IndexError) as err:
            # The module refused the caller's value, as a module service answers 422.
            raise ModuleError(kind, f"{type(err).__name__}: {err}") from err

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

    def qtable(self, session: str) -> dict[str, Any] | None:
        """The session's Q-table as ``QTable.to_dict()`` (``None``: no such session or table)."""
        built = self.sessions.get(session)
        return None if built is None or built.q_table is None else built.q_table.to_dict()

    def drop(self, session: str) -> bool:
        built = self.sessions.pop(session, None)
        if built is not None:
            built.agent.close()
        return built is not None


class ActorClient:
    """The calls of :class:`~llmagentos.service.remote.ServiceClient`, to a
    :class:`ModuleHost` actor, for one session."""

    def __init__(self, actor: Any, *, session: str | None = None) -> None:
        self.actor = actor
        self.session = session or uuid.uuid4().hex

    @staticmethod
    def _verb(kind: str, path: str) -> str:
        prefix = f"/v1/{kind}/"
        if not path.startswith(prefix):
            raise ModuleError(kind, f"not a call of {kind}: {path}")
        return path[len(prefix) :]

    def post(self, kind: str, path: str, **payload: Any) -> Any:
        import ray

        ref = self.actor.call.remote(kind, self._verb(kind, path), self.session, payload)
        return ray.get(ref)

    async def apost(self, kind: str, path: str, **payload: Any) -> Any:
        return await self.actor.call.remote(kind, self._verb(kind, path), self.session, payload)

    def close(self) -> None:
        """Nothing to close: the actor outlives the client (see ``ray.kill``)."""

    async def aclose(self) -> None:
        self.close()


def actor_modules(
    config: RunConfig | str | Path,
    *kinds: str,
    address: str | None = None,
    cpus: float = 1.0,
    max_sessions: int = 1024,
    actor: Any = None,
) -> list[Any]:
    """Remote modules of ``kinds`` in a :class:`ModuleHost` actor, sharing one session.

    Args:
        config: the run config whose agent the actor builds (one per session).
        address: the Ray cluster (see :func:`~llmagentos.distributed.cluster.connect`).
        cpus: CPUs the actor reserves.
        actor: an actor started before (``remote_modules`` of another session on it);
            a new one by default.

    Raises:
        ConfigError: an unknown kind.
        NotSerializable: the config cannot be sent.
    """
    from llmagentos.config import load_config
    from llmagentos.service.remote import _CLASSES

    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ConfigError("kinds", f"unknown or no module kinds {unknown}; from {list(KINDS)}")
    run_config = config if isinstance(config, RunConfig) else load_config(config)
    if actor is None:
        check_serializable(run_config, f"the config of {run_config.name!r}")
        ray = connect(address)
        host = ray.remote(num_cpus=cpus)(ModuleHost)
        actor = host.remote(run_config, tuple(KINDS), max_sessions)
    client = ActorClient(actor)
    return [_CLASSES[kind](client) for kind in kinds]
