"""A module service: an agent's modules (or the whole agent) behind HTTP.

:func:`service_app` builds a FastAPI app from an agent factory. Each ``session`` gets
its own agent from the factory, so a stateful module (a Q-table, an environment, a
state manager) keeps one state per session and several agents can share a service.
Calls within a session are serialised; sessions run concurrently.

Routes (all ``POST`` with JSON bodies validated by :mod:`llmagentos.service.wire`):

- ``/v1/{kind}/reset`` and ``/v1/{kind}/train`` for ``kind`` in perception, planning,
  execution, learning;
- ``/v1/perception/perceive``, ``/v1/planning/decide``, ``/v1/execution/perform``,
  ``/v1/learning/update``, ``/v1/learning/learn``: the module methods;
- ``/v1/agent/reset``, ``/v1/agent/act``, ``/v1/agent/step``, ``/v1/agent/episode``:
  the whole agent;

plus ``DELETE /v1/sessions/{session}``, ``GET /v1/sessions/{session}/qtable``,
``GET /healthz`` (alive), ``GET /readyz`` (ready: the factory built an agent),
``GET /metrics`` (Prometheus) and ``GET /openapi.json``.

A client's mistake (bad JSON, a wrong type, an action outside the space) is a 4xx that
names the field or value; only a failure of the service itself is a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from llmagentos._json import jsonable
from llmagentos.build import BuiltAgent
from llmagentos.exceptions import (
    ConfigError,
    LLMAgentOSError,
    MissingExtraError,
    ModelError,
    ModuleError,
    SessionConflict,
    SessionStoreUnavailable,
)
from llmagentos.service.store import SessionStore
from llmagentos.service.wire import (
    MODULE_ERRORS,
    SESSION_ERRORS,
    ActionReply,
    ActRequest,
    DecideRequest,
    DecisionReply,
    EpisodeRequest,
    FeaturesReply,
    LearnRequest,
    ObservationReply,
    OutcomeReply,
    PerceiveRequest,
    PerformRequest,
    ReportReply,
    ResetRequest,
    TrainRequest,
    UpdateRequest,
)
from llmagentos.types import Transition

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["KINDS", "Session", "SessionPool", "service_app"]

KINDS = ("perception", "planning", "execution", "learning")
T = TypeVar("T")
# The calling request's Idempotency-Key, set by the middleware for the handler's task.
_CALL_KEY: ContextVar[str | None] = ContextVar("llmagentos_service_call_key", default=None)


@dataclass(slots=True)
class Session:
    """A session's agent, its lock, and the version of it this replica holds."""

    built: BuiltAgent
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    version: int = 0


class SessionPool:
    """One built agent per session, least recently used evicted beyond ``max_sessions``.

    With a :class:`~llmagentos.service.store.SessionStore`, sessions also live outside
    this replica (see that module): calls are applied exactly once across replicas.
    """

    def __init__(
        self,
        factory: Callable[[], BuiltAgent],
        *,
        max_sessions: int = 1024,
        store: SessionStore | None = None,
    ) -> None:
        if max_sessions < 1:
            raise ConfigError("max_sessions", f"must be >= 1 (got {max_sessions})")
        self.factory = factory
        self.max_sessions = max_sessions
        self.store = store
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session: str) -> Session:
        found = self._sessions.get(session)
        if found is None:
            found = Session(self.factory())
            self._sessions[session] = found
            while len(self._sessions) > self.max_sessions:
                _, old = self._sessions.popitem(last=False)
                old.built.agent.close()
        else:
            self._sessions.move_to_end(session)
        return found

    async def run(
        self, session: str, work: Callable[[BuiltAgent], Awaitable[T]], key: str | None
    ) -> Any:
        """Apply ``work`` to the session's agent, once per idempotency ``key``.

        Calls of one session wait for each other; other sessions' calls run meanwhile
        (the modules' async methods: an LLM planner awaits its model, not the loop).
        """
        entry = self.get(session)
        async with entry.lock:
            store = self.store
            if store is None:
                return await work(entry.built)
            # The store's I/O and the pickling run in a worker thread: a slow disk or
            # Redis holds up this session only, never the event loop.
            stored = await asyncio.to_thread(store.load, session)
            if stored is not None:
                if key is not None and key == stored.last_key and stored.last_reply is not None:
                    return _Replayed(json.loads(stored.last_reply))  # applied already
                if stored.version != entry.version:
                    entry.built = pickle.loads(stored.state)  # another replica moved it on
                    entry.version = stored.version
            try:
                result = await work(entry.built)
                reply = json.dumps(jsonable(result))
                built, version = entry.built, entry.version + 1
                saved = await asyncio.to_thread(
                    lambda: store.save(session, version, pickle.dumps(built), key, reply)
                )
            except BaseException:
                entry.version = -1  # applied here but not stored: reload it next time
                raise
            if not saved:
                entry.version = -1
                raise SessionConflict(
                    f"session {session!r} was changed by another replica meanwhile; "
                    "the call was not applied"
                )
            entry.version = version
            return result

    def drop(self, session: str) -> bool:
        found = self._sessions.pop(session, None)
        if found is not None:
            found.built.agent.close()
        if self.store is not None:
            stored = self.store.load(session) is not None
            self.store.drop(session)
            return found is not None or stored
        return found is not None

    def peek(self, session: str) -> BuiltAgent | None:
        if self.store is not None:
            stored = self.store.load(session)
            if stored is not None:
                built: BuiltAgent = pickle.loads(stored.state)
                return built
        found = self._sessions.get(session)
        return None if found is None else found.built


@dataclass(frozen=True, slots=True)
class _Replayed:
    """The stored reply of a call applied before (returned as it was)."""

    content: Any


def _fastapi() -> Any:
    try:
        import fastapi
    except ImportError as err:
        raise MissingExtraError("module services", "serve", "fastapi") from err
    return fastapi


class _Measure:
    """Pure ASGI middleware: per-route metrics, and the call's ``Idempotency-Key`` made
    visible to the handlers (a contextvar set in the same task, before routing)."""

    def __init__(self, app: Any, *, requests: Any, seconds: Any) -> None:
        self.app, self.requests, self.seconds = app, requests, seconds

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        key = next((v for k, v in scope["headers"] if k == b"idempotency-key"), None)
        _CALL_KEY.set(key.decode("latin-1") if key is not None else None)
        status = 500  # what the client sees if the app fails before answering

        async def send_and_note(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")  # the route template
            self.requests.labels(path, str(status)).inc()
            self.seconds.labels(path).observe(time.perf_counter() - started)


def service_app(
    factory: Callable[[], BuiltAgent],
    *,
    name: str = "llmagentos",
    kinds: tuple[str, ...] = KINDS,
    agent: bool = True,
    max_sessions: int = 1024,
    store: SessionStore | None = None,
) -> FastAPI:
    """The FastAPI app serving ``kinds`` (and the whole agent when ``agent``).

    ``factory`` builds one agent per session; it is called once at start, so a broken
    config fails before the service listens.

    Raises:
        ConfigError: an unknown kind, or the factory fails.
        MissingExtraError: FastAPI is not installed (``llmagentos[serve]``).
    """
    fastapi = _fastapi()
    from fastapi.responses import JSONResponse
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from starlette.exceptions import HTTPException as StarletteHTTPException

    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError("modules", f"unknown module kind {kind!r}; one of {', '.join(KINDS)}")
    factory()  # fail at start, not on the first request
    pool = SessionPool(factory, max_sessions=max_sessions, store=store)
    registry = CollectorRegistry()
    requests = Counter(
        "llmagentos_service_requests", "Requests by route and status", ["route", "status"],
        registry=registry,
    )  # fmt: skip
    seconds = Histogram(
        "llmagentos_service_request_seconds", "Request time by route", ["route"],
        registry=registry,
    )  # fmt: skip
    app: FastAPI = fastapi.FastAPI(
        title=f"{name} module service",
        description="llmagentos modules as a service: one agent per session.",
        version="1",
    )
    app.state.pool = pool

    app.add_middleware(_Measure, requests=requests, seconds=seconds)

    @app.exception_handler(ModuleError)
    async def _module_error(request: Any, err: ModuleError) -> Any:
        # The module refused what the client sent (an action outside the space...).
        return JSONResponse({"detail": str(err), "module": err.module}, status_code=400)

    @app.exception_handler(ConfigError)
    async def _config_error(request: Any, err: ConfigError) -> Any:
        return JSONResponse({"detail": str(err), "field": err.field}, status_code=400)

    @app.exception_handler(ModelError)
    async def _model_down(request: Any, err: ModelError) -> Any:
        # A backend this service depends on failed: not the client's mistake.
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(SessionStoreUnavailable)
    async def _store_down(request: Any, err: SessionStoreUnavailable) -> Any:
        # Not the client's mistake, and passing: answered so the call may be sent again.
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(SessionConflict)
    async def _conflict(request: Any, err: SessionConflict) -> Any:
        return JSONResponse({"detail": str(err)}, status_code=409)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Any, err: StarletteHTTPException) -> Any:
        # Name what was not found or not allowed; keep a handler's own detail.
        detail = err.detail
        if err.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path} (see /openapi.json)"
        elif err.status_code == 405 and detail == "Method Not Allowed":
            detail = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"detail": detail}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(LLMAgentOSError)
    async def _our_error(request: Any, err: LLMAgentOSError) -> Any:
        return JSONResponse({"detail": str(err)}, status_code=500)

    async def in_session(session: str, work: Callable[[BuiltAgent], Awaitable[T]]) -> Any:
        result = await pool.run(session, work, _CALL_KEY.get())
        if isinstance(result, _Replayed):
            return JSONResponse(result.content, headers={"x-idempotent-replay": "true"})
        return result

    def module_of(built: BuiltAgent, kind: str) -> Any:
        return built.agent.modules[KINDS.index(kind)]

    async def guarded(kind: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (ModuleError, ModelError):
            raise
        except (LLMAgentOSError, TypeError, ValueError, KeyError, IndexError) as err:
            # The module refused the client's value (a state it cannot index, a wrong
            # type): the client's mistake, a 422 that says which module and why.
            raise ModuleError(kind, f"{type(err).__name__}: {err}") from err

    _service_routes(app, pool, kinds, registry)
    for kind in kinds:
        _module_routes(app, kind, in_session, module_of, guarded)
    if agent:
        _agent_routes(app, in_session, guarded)
    return app


def _service_routes(app: FastAPI, pool: SessionPool, kinds: tuple[str, ...], registry: Any) -> None:
    fastapi = _fastapi()
    from fastapi.responses import PlainTextResponse
    from prometheus_client import CONTENT_TYPE_LATEST
    from prometheus_client import generate_latest as prometheus_text

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        """Alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"])
    async def readyz() -> dict[str, Any]:
        """Ready to serve: the factory built an agent at start."""
        return {"status": "ready", "sessions": len(pool), "modules": list(kinds)}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    async def metrics() -> Any:
        """Prometheus metrics: requests and latency per route."""
        return PlainTextResponse(prometheus_text(registry), media_type=CONTENT_TYPE_LATEST)

    @app.delete("/v1/sessions/{session}", tags=["sessions"], responses=SESSION_ERRORS)
    async def drop_session(session: str) -> dict[str, bool]:
        """Forget a session's state."""
        if not pool.drop(session):
            raise fastapi.HTTPException(404, f"no session {session!r}")
        return {"dropped": True}

    @app.get("/v1/sessions/{session}/qtable", tags=["sessions"], responses=SESSION_ERRORS)
    async def qtable(session: str) -> dict[str, Any]:
        """The session's Q-table (for agents that have one)."""
        built = pool.peek(session)
        if built is None:
            raise fastapi.HTTPException(404, f"no session {session!r}")
        if built.q_table is None:
            raise fastapi.HTTPException(404, f"session {session!r} has no Q-table")
        return dict(built.q_table.to_dict())


def _module_routes(app: FastAPI, kind: str, in_session: Any, module_of: Any, guarded: Any) -> None:
    tags: list[str | Enum] = [kind]

    @app.post(f"/v1/{kind}/reset", tags=tags, name=f"{kind}_reset", responses=MODULE_ERRORS)
    async def reset(body: ResetRequest) -> ObservationReply:
        """Reset the module for a new episode (execution: returns the first observation)."""

        async def work(built: BuiltAgent) -> ObservationReply:
            module = module_of(built, kind)
            observation = await guarded(kind, lambda: module.areset(seed=body.seed))
            shown = jsonable(observation) if kind == "execution" else None
            return ObservationReply(observation=shown)

        return await in_session(body.session, work)  # type: ignore[no-any-return]

    @app.post(f"/v1/{kind}/train", tags=tags, name=f"{kind}_train", responses=MODULE_ERRORS)
    async def train(body: TrainRequest) -> dict[str, bool]:
        """Switch training (exploration, learning) on or off."""

        async def work(built: BuiltAgent) -> None:
            module_of(built, kind).train(body.mode)

        await in_session(body.session, work)
        return {"training": body.mode}

    if kind == "perception":

        @app.post("/v1/perception/perceive", tags=tags, responses=MODULE_ERRORS)
        async def perceive(body: PerceiveRequest) -> FeaturesReply:
            """Observation -> features."""

            async def work(built: BuiltAgent) -> FeaturesReply:
                module = module_of(built, kind)
                features = await guarded(kind, lambda: module.aperceive(body.observation))
                return FeaturesReply(features=jsonable(features))

            return await in_session(body.session, work)  # type: ignore[no-any-return]

    elif kind == "planning":

        @app.post("/v1/planning/decide", tags=tags, responses=MODULE_ERRORS)
        async def decide(body: DecideRequest) -> DecisionReply:
            """Features -> the decision: action, reason, scores."""

            async def work(built: BuiltAgent) -> DecisionReply:
                module = module_of(built, kind)
                decision = await guarded(kind, lambda: module.adecide(body.features))
                return DecisionReply(
                    action=jsonable(decision.action),
                    reason=decision.reason,
                    scores=None if decision.scores is None else list(decision.scores),
                )

            return await in_session(body.session, work)  # type: ignore[no-any-return]

    elif kind == "execution":

        @app.post("/v1/execution/perform", tags=tags, responses=MODULE_ERRORS)
        async def perform(body: PerformRequest) -> OutcomeReply:
            """Action -> the outcome: observation, reward, flags, info."""

            async def work(built: BuiltAgent) -> OutcomeReply:
                module = module_of(built, kind)
                outcome = await guarded(kind, lambda: module.aperform(body.action))
                return OutcomeReply(**outcome.to_dict())

            return await in_session(body.session, work)  # type: ignore[no-any-return]

    else:

        @app.post("/v1/learning/update", tags=tags, responses=MODULE_ERRORS)
        async def update(body: UpdateRequest) -> ReportReply:
            """Learn from a whole transition; returns the learner's report."""

            async def work(built: BuiltAgent) -> ReportReply:
                module = module_of(built, kind)
                transition = Transition(**body.transition.model_dump())
                report = await guarded(kind, lambda: module.aupdate(transition))
                return ReportReply(report=None if report is None else jsonable(report))

            return await in_session(body.session, work)  # type: ignore[no-any-return]

        @app.post("/v1/learning/learn", tags=tags, responses=MODULE_ERRORS)
        async def learn(body: LearnRequest) -> ReportReply:
            """Learn from (observation, reward): the seed's method."""

            async def work(built: BuiltAgent) -> ReportReply:
                module = module_of(built, kind)
                await guarded(kind, lambda: module.alearn(body.observation, body.reward))
                return ReportReply()

            return await in_session(body.session, work)  # type: ignore[no-any-return]


def _agent_routes(app: FastAPI, in_session: Any, guarded: Any) -> None:
    tags: list[str | Enum] = ["agent"]

    @app.post("/v1/agent/reset", tags=tags, responses=MODULE_ERRORS)
    async def agent_reset(body: ResetRequest) -> ObservationReply:
        """Start an episode of the session's agent; returns the first observation."""

        async def work(built: BuiltAgent) -> ObservationReply:
            observation = await guarded("agent", lambda: built.agent.areset(seed=body.seed))
            return ObservationReply(observation=jsonable(observation))

        return await in_session(body.session, work)  # type: ignore[no-any-return]

    @app.post("/v1/agent/act", tags=tags, responses=MODULE_ERRORS)
    async def agent_act(body: ActRequest) -> ActionReply:
        """Perceive and plan: the action for an observation."""

        async def work(built: BuiltAgent) -> ActionReply:
            action = await guarded("agent", lambda: built.agent.aact(body.observation))
            return ActionReply(action=jsonable(action))

        return await in_session(body.session, work)  # type: ignore[no-any-return]

    @app.post("/v1/agent/step", tags=tags, responses=MODULE_ERRORS)
    async def agent_step(body: PerformRequest) -> OutcomeReply:
        """Execute and learn: the outcome of an action."""

        async def work(built: BuiltAgent) -> OutcomeReply:
            agent = built.agent
            observation, reward = await guarded("agent", lambda: agent.astep(body.action))
            record = agent.last_record
            info = {} if record is None else jsonable(record.info)
            return OutcomeReply(
                observation=jsonable(observation), reward=reward,
                terminated=agent.terminated, truncated=agent.truncated, info=info,
            )  # fmt: skip

        return await in_session(body.session, work)  # type: ignore[no-any-return]

    @app.post("/v1/agent/episode", tags=tags, responses=MODULE_ERRORS)
    async def agent_episode(body: EpisodeRequest) -> dict[str, Any]:
        """Run one whole episode; returns its result."""

        async def work(built: BuiltAgent) -> dict[str, Any]:
            result = await guarded(
                "agent",
                lambda: built.agent.arun_episode(seed=body.seed, max_steps=body.max_steps),
            )
            return dict(result.to_dict())

        return await in_session(body.session, work)  # type: ignore[no-any-return]
