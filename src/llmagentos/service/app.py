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

plus ``GET /v1/sessions`` (the caller's own sessions), ``DELETE /v1/sessions/{session}``,
``GET /v1/sessions/{session}/qtable``, ``GET /healthz`` (alive), ``GET /readyz`` (ready:
the factory built an agent), ``GET /metrics`` (Prometheus) and ``GET /openapi.json``.

Tenancy is the service's own: every session is keyed by the tenant of the request's
verified principal (:mod:`llmagentos.service.tenancy`) and the id the handler actually
uses (after FastAPI decoded the path and parsed the body), so no id a client writes
reaches another tenant's session, stored state or listing.

A client's mistake (bad JSON, a wrong type, an action outside the space) is a 4xx that
names the field or value; only a failure of the service itself is a 5xx.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
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
    SessionLimitReached,
    SessionStateRefused,
    SessionStoreUnavailable,
)
from llmagentos.load_shedding import Shedding, SheddingLimits, shed_first
from llmagentos.principal import SECRET_ENV, PrincipalSigner
from llmagentos.principal import principal_secret as read_principal_secret
from llmagentos.service.pool import Replayed, SessionPool
from llmagentos.service.store import SessionKey, SessionStore
from llmagentos.service.tenancy import DEFAULT_MAX_BODY_BYTES, PrincipalGate, caller_tenant
from llmagentos.service.wire import (
    LIST_ERRORS,
    MODULE_ERRORS,
    SESSION_ERRORS,
    SESSION_PATTERN,
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
    SessionsReply,
    TrainRequest,
    UpdateRequest,
)
from llmagentos.telemetry.asgi import TracingMiddleware
from llmagentos.telemetry.asgi import collector as telemetry_collector
from llmagentos.types import Transition

if TYPE_CHECKING:
    from fastapi import FastAPI

    from llmagentos.memory.manager import MemoryManager

__all__ = ["KINDS", "SessionPool", "service_app"]

KINDS = ("perception", "planning", "execution", "learning")
T = TypeVar("T")
# The calling request's Idempotency-Key, set by the middleware for the handler's task.
_CALL_KEY: ContextVar[str | None] = ContextVar("llmagentos_service_call_key", default=None)


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
    max_sessions_per_tenant: int | None = None,
    store: SessionStore | None = None,
    principal_secret: str | bytes | None = None,
    require_principal: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    memory: MemoryManager | None = None,
    shedding: SheddingLimits | None = None,
) -> FastAPI:
    """The FastAPI app serving ``kinds`` (and the whole agent when ``agent``).

    ``factory`` builds one agent per session; it is called once at start, so a broken
    config fails before the service listens.

    Args:
        max_sessions: sessions in memory, all tenants together.
        max_sessions_per_tenant: sessions in memory per tenant (see
            :class:`~llmagentos.service.pool.SessionPool` for what happens past it).
        store: keep sessions outside the replica (:mod:`llmagentos.service.store`).
        principal_secret: the secret the gateway signs principals with (default:
            ``LLMAGENTOS_PRINCIPAL_SECRET``); without one, a signed header is a 401.
        require_principal: refuse (401) every request without a valid signed principal,
            except ``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json``.
        max_body_bytes: longest request body read (413 past it).
        memory: serve this memory manager under ``/v1/memory``, namespaced by the
            caller's tenant (:mod:`llmagentos.service.memory_routes`).
        shedding: requests handled at once and the queue past them (past both: 503 at
            once with ``Retry-After``; :mod:`llmagentos.load_shedding`).

    Raises:
        ConfigError: an unknown kind, the factory fails, a principal required without a
            secret, or a store that cannot hold this agent's state.
        MissingExtraError: FastAPI is not installed (``llmagentos[serve]``).
    """
    fastapi = _fastapi()
    from fastapi.responses import JSONResponse
    from prometheus_client import CollectorRegistry, Counter, Histogram

    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError("modules", f"unknown module kind {kind!r}; one of {', '.join(KINDS)}")
    if max_body_bytes < 1:
        raise ConfigError("max_body_bytes", f"must be >= 1 (got {max_body_bytes})")
    secret = read_principal_secret(principal_secret)
    if require_principal and secret is None:
        raise ConfigError(
            "require_principal",
            f"a required principal needs the secret it is signed with: set {SECRET_ENV}",
        )
    signer = None if secret is None else PrincipalSigner(secret)
    factory()  # fail at start, not on the first request
    pool = SessionPool(
        factory,
        max_sessions=max_sessions,
        max_sessions_per_tenant=max_sessions_per_tenant,
        store=store,
    )
    registry = CollectorRegistry()
    requests = Counter(
        "llmagentos_service_requests", "Requests by route and status", ["route", "status"],
        registry=registry,
    )  # fmt: skip
    seconds = Histogram(
        "llmagentos_service_request_seconds", "Request time by route", ["route"],
        registry=registry,
    )  # fmt: skip
    registry.register(_PoolCollector(pool))
    registry.register(telemetry_collector())
    app: FastAPI = fastapi.FastAPI(
        title=f"{name} module service",
        description="llmagentos modules as a service: one agent per session, per tenant.",
        version="1",
        # A redirect would name this replica's own address, which clients behind a
        # gateway must neither see nor follow around it: a wrong path is a 404.
        redirect_slashes=False,
    )
    app.state.pool = pool

    # Added last, so outermost: the principal is verified before routing, and the
    # measure counts its refusals too.
    app.add_middleware(
        PrincipalGate, signer=signer, require=require_principal, max_body_bytes=max_body_bytes
    )
    app.add_middleware(_Measure, requests=requests, seconds=seconds)
    app.add_middleware(TracingMiddleware, service=f"{name} module service")
    # Outermost of all: a request past the limits costs nothing else.
    shedder = Shedding(
        shedding or SheddingLimits(), what="the service", max_body_bytes=max_body_bytes
    )
    shed_first(app, shedder)

    _error_handlers(app)

    async def in_session(session: str, work: Callable[[BuiltAgent], Awaitable[T]]) -> Any:
        key = SessionKey(caller_tenant(), session)
        result = await pool.run(key, work, _CALL_KEY.get())
        if isinstance(result, Replayed):
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
    if memory is not None:
        from llmagentos.service.memory_routes import add_memory_routes

        add_memory_routes(app, memory)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Each typed error as the status it means, naming what went wrong."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Any, err: RequestValidationError) -> Any:
        # FastAPI's own 422, whose errors quote the input as parsed; but a NaN, an
        # infinity or a lone surrogate there has no JSON form, and its reply was a 500.
        errors = jsonable(jsonable_encoder(err.errors()))  # non-finite floats as text
        body = json.dumps({"detail": errors}, ensure_ascii=True, allow_nan=False)
        return Response(body, status_code=422, media_type="application/json")

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

    @app.exception_handler(SessionLimitReached)
    async def _full(request: Any, err: SessionLimitReached) -> Any:
        headers = {"Retry-After": "1"} if err.status == 503 else None
        content = {"detail": str(err), "field": err.field, "limit": err.limit}
        return JSONResponse(content, status_code=err.status, headers=headers)

    @app.exception_handler(SessionStateRefused)
    async def _refused_state(request: Any, err: SessionStateRefused) -> Any:
        # The store holds a state this service did not write for this session: an
        # integrity failure behind the service, not the client's doing. Nothing loaded.
        return JSONResponse({"detail": str(err), "reason": err.reason}, status_code=500)

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

    # The id in a path is checked as in a body, after the path was percent-decoded
    # (parameters as defaults: the annotations are strings resolved in module scope).
    session_id = fastapi.Path(pattern=SESSION_PATTERN, description="The session id.")
    most = fastapi.Query(1000, ge=1, le=10000, description="Most ids to list.")

    @app.get("/v1/sessions", tags=["sessions"], responses=LIST_ERRORS)
    async def list_sessions(limit: int = most) -> SessionsReply:
        """The caller's own sessions (its tenant's), sorted by id."""
        names, more = await pool.sessions(caller_tenant(), limit)
        return SessionsReply(sessions=names, truncated=more)

    @app.delete("/v1/sessions/{session}", tags=["sessions"], responses=SESSION_ERRORS)
    async def drop_session(session: str = session_id) -> dict[str, bool]:
        """Forget one of the caller's sessions (after the call it is running, if any)."""
        if not await pool.drop(SessionKey(caller_tenant(), session)):
            raise fastapi.HTTPException(404, f"no session {session!r}")
        return {"dropped": True}

    @app.get("/v1/sessions/{session}/qtable", tags=["sessions"], responses=SESSION_ERRORS)
    async def qtable(session: str = session_id) -> dict[str, Any]:
        """The caller's session's Q-table (for agents that have one)."""
        built = await pool.peek(SessionKey(caller_tenant(), session))
        if built is None:
            raise fastapi.HTTPException(404, f"no session {session!r}")
        if built.q_table is None:
            raise fastapi.HTTPException(404, f"session {session!r} has no Q-table")
        return dict(built.q_table.to_dict())


class _PoolCollector:
    """The session pool's own figures, read at scrape time."""

    def __init__(self, pool: SessionPool) -> None:
        self.pool = pool

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.pool.stats
        yield GaugeMetricFamily(
            "llmagentos_service_sessions", "Sessions in memory", value=len(self.pool)
        )
        yield CounterMetricFamily(
            "llmagentos_service_sessions_evicted",
            "Idle sessions evicted from memory (saved in the store first)",
            value=stats.evicted,
        )
        refused = CounterMetricFamily(
            "llmagentos_service_sessions_refused",
            "New sessions refused by a quota",
            labels=["limit"],
        )
        for limit in ("max_sessions_per_tenant", "max_sessions"):
            refused.add_metric([limit], stats.refused[limit])
        yield refused
        states = CounterMetricFamily(
            "llmagentos_service_stored_states_refused",
            "Stored states refused (forged, rolled back, unsigned pickle)",
            labels=["reason"],
        )
        for reason in ("forged", "rollback", "unsigned"):
            states.add_metric([reason], stats.state_refused[reason])
        yield states


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
                    details=None if decision.details is None else jsonable(decision.details),
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
