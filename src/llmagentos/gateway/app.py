"""The API gateway: one front door that routes ``/{service}/{path}`` to a service's replicas.

What it does on every proxied request:

- finds the service (unknown: 404 naming it and the known ones) and picks a replica
  round-robin (none left: 503 with ``Retry-After``);
- refuses bodies over the size limit (413) before reading them whole;
- gives the request an id (``X-Request-ID``, kept if the client sent one) and a W3C
  ``traceparent`` (continued if the client sent one, with a new span for the hop);
- forwards with the service's timeout (504 when it passes); a replica that refuses
  the connection is skipped for the next one whatever the method (nothing reached
  it); other failures are retried on another replica only for idempotent calls
  (GET, HEAD, PUT, DELETE, OPTIONS, a route the service marks idempotent, or a request
  with an ``Idempotency-Key``), otherwise answered 502;
- writes one structured access-log line and Prometheus metrics per route and upstream
  (routes labelled by the service's own path templates: see :mod:`.route_labels`).

``/gateway/services`` lists the registry and each service's live state (breaker,
replicas' health, ejection and calls in flight); ``POST``/``DELETE
/gateway/services/{name}/replicas`` with ``{"url": ...}`` add and remove replicas at
run time. ``/healthz``, ``/readyz`` and ``/metrics`` are the gateway's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx

from llmagentos.exceptions import AuthError, ConfigError, GatewayError, MissingExtraError
from llmagentos.gateway.access_log import ACCESS_LOGGER
from llmagentos.gateway.affinity import session_key
from llmagentos.gateway.auth import ApiKeyStore, scoped_session
from llmagentos.gateway.balancer import HealthChecker, Replica
from llmagentos.gateway.jwt_auth import Credentials, JwtVerifier
from llmagentos.gateway.openai_face import OpenAIFace
from llmagentos.gateway.openapi import gateway_openapi
from llmagentos.gateway.ratelimit import RateLimiter
from llmagentos.gateway.registry import RESERVED_NAMES, ServiceEntry, ServiceRegistry
from llmagentos.gateway.route_labels import RouteLabels
from llmagentos.gateway.runtime import ResilienceSettings, ServiceRuntime
from llmagentos.gateway.upstream import (
    AiohttpUpstream,
    HttpxUpstream,
    Upstream,
    UpstreamError,
    UpstreamRefused,
    UpstreamReply,
    UpstreamTimeout,
    tls_context,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["IDEMPOTENT_METHODS", "Gateway", "gateway_app"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length",
    "expect",  # the gateway has read the body already: nothing to wait for upstream
})  # fmt: skip
access_log = logging.getLogger(ACCESS_LOGGER)


def _hop_by_hop(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The standard hop-by-hop headers plus any the message's ``Connection`` names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return _HOP_BY_HOP | named if named else _HOP_BY_HOP


def _traceparent(incoming: str | None) -> str:
    """Continue the caller's trace with a new span, or start one."""
    span = secrets.token_hex(8)
    if incoming:
        parts = incoming.split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
            return f"{parts[0]}-{parts[1]}-{span}-{parts[3]}"
    return f"00-{secrets.token_hex(16)}-{span}-01"


def _is_idempotent(
    method: str, route: str, entry: ServiceEntry, headers: Mapping[str, str]
) -> bool:
    return (
        method in IDEMPOTENT_METHODS
        or route in entry.idempotent_routes
        or "idempotency-key" in headers
    )


class _TooLarge(Exception):
    """The request body passed the size limit (answered 413)."""


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class Gateway:
    """The gateway's state and handlers; :meth:`app` is the ASGI app.

    Args:
        registry: the services to route to (changed at run time by the admin routes).
        max_body_bytes: the largest request body accepted (larger: 413).
        retries: extra attempts on another replica for idempotent calls that failed
            after reaching a replica (refused connections are always re-routed).
        upstream: the HTTP client for the hop to replicas (default: aiohttp's).
        upstream_ca_file: trust this PEM file's CAs for https replicas (and their health
            checks), beside the system's.
        transport: an httpx transport for the upstream calls instead (tests put
            in-process ASGI apps behind the gateway this way).
        face: the OpenAI-compatible routes (``/v1/models``, ``/v1/chat/completions``)
            over the exposed models and agents, if any.
        keys: API keys; with them every proxied request needs ``Authorization: Bearer
            <key>`` (401 otherwise) and a scope for ``service:route`` (403 otherwise),
            and a JSON body's ``session`` (or a ``/v1/sessions/<id>`` path) is moved
            into the key's tenant, so tenants never reach each other's sessions.
        jwt: accept bearer JWTs too (or only them, without ``keys``): tenant and scopes
            from the token's claims, with the same rules as keys.
        limiter: per-key (or per-client-address) token buckets: 429 with ``Retry-After``.
        resilience: balancing, retry budget, breaker and ejection settings for every
            service (defaults: least-outstanding, 20% retries, 5 failures open the
            breaker for 30 s, 5 failures eject a replica).
    """

    def __init__(
        self,
        registry: ServiceRegistry,
        *,
        max_body_bytes: int = 1_000_000,
        retries: int = 1,
        upstream: Upstream | None = None,
        upstream_ca_file: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        face: OpenAIFace | None = None,
        keys: ApiKeyStore | None = None,
        jwt: JwtVerifier | None = None,
        limiter: RateLimiter | None = None,
        resilience: ResilienceSettings | None = None,
    ) -> None:
        if max_body_bytes < 1:
            raise ConfigError("max_body_bytes", f"must be >= 1 (got {max_body_bytes})")
        if retries < 0:
            raise ConfigError("retries", f"must be >= 0 (got {retries})")
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError as err:
            raise MissingExtraError("the gateway", "gateway", "prometheus-client") from err
        self.registry = registry
        self.face = face
        self.keys = keys
        self.credentials = Credentials(keys, jwt) if keys is not None or jwt is not None else None
        self.limiter = limiter
        self.resilience = resilience or ResilienceSettings()
        self._runtimes: dict[str, ServiceRuntime] = {}
        self.max_body_bytes = max_body_bytes
        self.retries = retries
        self._upstream_tls: ssl.SSLContext | bool = True
        if upstream_ca_file is not None:
            self._upstream_tls = tls_context(upstream_ca_file)
        if upstream is None:
            upstream = (
                HttpxUpstream(transport)
                if transport is not None
                else AiohttpUpstream(ca_file=upstream_ca_file)
            )
        self.upstream = upstream
        self.closers: list[Callable[[], None]] = []  # run at shutdown, after the last request
        self.metrics = CollectorRegistry()
        self.route_labels = RouteLabels()
        self._learning: dict[str, float] = {}  # service -> when its templates may be fetched
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests_total = Counter(
            "llmagentos_gateway_requests", "Proxied requests",
            ["service", "route", "upstream", "status"], registry=self.metrics,
        )  # fmt: skip
        self.upstream_latency = Histogram(
            "llmagentos_gateway_upstream_seconds", "Time of each attempt at a replica",
            ["service", "upstream"], registry=self.metrics,
        )  # fmt: skip
        self.replica_healthy = Gauge(
            "llmagentos_gateway_replica_healthy", "1 when a replica passes its checks and is "
            "not ejected", ["service", "replica"], registry=self.metrics,
        )  # fmt: skip
        self.breaker_open = Gauge(
            "llmagentos_gateway_breaker_open", "1 while a service's circuit breaker is not closed",
            ["service"], registry=self.metrics,
        )  # fmt: skip
        self.latency = Histogram(
            "llmagentos_gateway_request_seconds", "Proxied request time, end to end",
            ["service", "route"], registry=self.metrics,
        )  # fmt: skip

    # -- proxying -------------------------------------------------------------------------

    async def proxy(self, request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["service"]
        route = "/" + request.path_params.get("path", "")
        request_id = request.headers.get("x-request-id") or secrets.token_hex(12)
        entry = self.registry.get(name)
        upstream, tried = "-", 0
        refused = await self._admit(request, name, route, request_id)
        if refused is not None:
            reply = refused
        elif name in RESERVED_NAMES:
            reply = _own_path_refused(request, request_id, face=self.face is not None)
        elif entry is None:
            known = ", ".join(self.registry.names()) or "none"
            reply = _problem(404, f"unknown service {name!r} (known: {known})", request_id)
        else:
            try:
                body = await _read_body(request, self.max_body_bytes)
            except _TooLarge:
                reply = _problem(413, f"request body over {self.max_body_bytes} bytes", request_id)
            else:
                scoped = _scoped_body(request, body)
                if isinstance(scoped, GatewayError):
                    reply = _problem(scoped.status, str(scoped), request_id)
                else:
                    route = _scoped_route(request, route)
                    reply, upstream, tried = await self._forward(
                        request, entry, route, scoped, request_id
                    )
        seconds = time.perf_counter() - started
        # Labels are bounded: unknown names and raw paths would grow a series per request.
        if entry is None:
            labels = ("(unknown)", "-")
        else:
            labels = (name, self.route_labels.label(name, route))
            self._learn_routes(entry)
        self._observe(labels, upstream, reply.status_code, seconds)
        _log_access(
            request, request_id, service=name, route=route, upstream=upstream,
            status=reply.status_code, seconds=seconds, attempts=tried,
        )  # fmt: skip
        return reply

    def _observe(self, labels: tuple[str, str], upstream: str, status: int, seconds: float) -> None:
        """Count a request by (service, route), upstream and status, and time it."""
        self.requests_total.labels(*labels, upstream, str(status)).inc()
        self.latency.labels(*labels).observe(seconds)

    def _learn_routes(self, entry: ServiceEntry) -> None:
        """Fetch the service's route templates in the background, if due (every 30 s
        until one replica answers with an OpenAPI document)."""
        now = time.monotonic()
        if self.route_labels.knows(entry.name) or self._learning.get(entry.name, 0.0) > now:
            return
        self._learning[entry.name] = now + 30.0
        task = asyncio.get_running_loop().create_task(self._fetch_routes(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch_routes(self, entry: ServiceEntry) -> None:
        for url in list(entry.replicas):
            try:
                reply = await self.upstream.request(
                    "GET", url + "/openapi.json", body=b"", headers=[], timeout=2.0
                )
                document = json.loads(reply.content) if reply.status == 200 else None
            except (UpstreamError, ValueError):
                continue  # another replica may answer; generic labels meanwhile
            if isinstance(document, dict) and self.route_labels.learn(entry.name, document):
                return

    def all_replicas(self) -> list[Replica]:
        """Every registered replica (what the active health checker polls)."""
        replicas: list[Replica] = []
        for name in self.registry.names():
            entry = self.registry.get(name)
            if entry is not None:
                replicas += self._runtime(entry).pool(entry)
        return replicas

    def _runtime(self, entry: ServiceEntry) -> ServiceRuntime:
        runtime = self._runtimes.get(entry.name)
        if runtime is None:
            runtime = self._runtimes[entry.name] = ServiceRuntime(
                self.resilience, balancing=entry.balancing
            )
        return runtime

    async def _forward(
        self, request: Request, entry: ServiceEntry, route: str, body: bytes, request_id: str
    ) -> tuple[Response, str, int]:
        """Send to the replicas in turn; returns the reply, the last upstream, attempts.

        The service's breaker may refuse at once (503); a refused connection moves on to
        another replica for any method; a failure after the request reached a replica
        (an error, a timeout, a 5xx) is retried on another only for idempotent calls
        and only while the service's retry budget allows.
        """

        runtime = self._runtime(entry)
        permit = runtime.breaker.acquire()
        if permit is None:
            return _circuit_open(entry, runtime, request_id), "-", 0
        runtime.budget.record_request()
        headers = _upstream_headers(request, request_id)
        idempotent = _is_idempotent(request.method, route, entry, request.headers)
        session = _session_of(request, route, body) if runtime.affinity is not None else None
        target = _with_query(request, route)
        tried: set[str] = set()
        attempts = 0
        failure: Response | None = None
        while True:
            replica = runtime.pick(entry, tried, session)
            if replica is None:
                permit.failure()
                detail = f"no replica of {entry.name!r} is available"
                return failure or _problem(503, detail, request_id), "-", attempts
            tried.add(replica.url)
            attempts += 1
            replica.begin()
            sent = time.perf_counter()
            streaming = False
            try:
                answer = await self.upstream.request(
                    request.method, replica.url + target, body=body, headers=headers,
                    timeout=entry.timeout_for(route),
                )  # fmt: skip
                streaming = answer.stream is not None
            except UpstreamRefused:
                runtime.record(replica, False, entry)
                continue  # nothing reached that replica: safe to go on, whatever the method
            except UpstreamError as err:
                runtime.record(replica, False, entry)
                failure = _failed(err, entry, route, request_id)
                if idempotent and runtime.budget.can_retry():
                    continue  # kept as the answer if no other replica is left to ask
                permit.failure()
                return failure, replica.url, attempts
            finally:
                if not streaming:  # a stream is in flight on the replica until it ends
                    replica.end()
                hop = time.perf_counter() - sent
                self.upstream_latency.labels(entry.name, replica.url).observe(hop)
            ok = answer.status < 500
            runtime.record(replica, ok, entry)
            reply = _reply(answer, request_id, on_end=replica.end, head=request.method == "HEAD")
            if not ok and idempotent and runtime.budget.can_retry():
                failure = reply  # kept in case no other replica is left to ask
                continue
            permit.record(ok)
            return reply, replica.url, attempts

    def _guard(
        self, service: str, route: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind the same keys and limits as the proxied routes."""

        async def guarded(request: Request) -> Response:
            started = time.perf_counter()
            request_id = request.headers.get("x-request-id") or secrets.token_hex(12)
            refused = await self._admit(request, service, route, request_id)
            reply = refused if refused is not None else await handler(request)
            reply.headers.setdefault("x-request-id", request_id)
            seconds = time.perf_counter() - started  # a stream: until its headers
            self._observe((service, route), "-", reply.status_code, seconds)
            _log_access(
                request, request_id, service=service, route=route, upstream="-",
                status=reply.status_code, seconds=seconds, attempts=0,
            )  # fmt: skip
            return reply

        return guarded

    async def _admit(
        self, request: Request, service: str, route: str, request_id: str
    ) -> Response | None:
        """Authenticate, authorise and rate-limit; the refusal, or ``None`` to go on."""
        principal = None
        if self.credentials is not None:
            try:
                # scrypt takes ~40 ms for an uncached key, a JWKS may be fetched: not on
                # the event loop.
                principal = await asyncio.to_thread(
                    self.credentials.authenticate, request.headers.get("authorization")
                )
                principal.require(service, route)
            except AuthError as err:
                reply = _problem(err.status, str(err), request_id)
                if err.status == 401:
                    reply.headers["www-authenticate"] = 'Bearer realm="llmagentos"'
                return reply
            request.state.principal = principal
        if self.limiter is not None:
            client = request.client.host if request.client is not None else "-"
            who = principal.key_id if principal is not None else f"ip:{client}"
            decision = await self.limiter.take(who)
            if not decision.allowed:
                reply = _problem(429, f"rate limit reached for {who}", request_id)
                reply.headers["retry-after"] = str(max(1, math.ceil(decision.retry_after)))
                return reply
        return None

    # -- the gateway's own routes ---------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ready", "services": self.registry.names()})

    async def metrics_text(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        from starlette.responses import Response

        now = time.monotonic()
        for name, runtime in self._runtimes.items():
            self.breaker_open.labels(name).set(runtime.breaker.state.value != "closed")
            for url, replica in runtime.replicas.items():
                self.replica_healthy.labels(name, url).set(replica.available(now))
        return Response(generate_latest(self.metrics), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse(gateway_openapi(face=self.face is not None))

    async def services(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        listed = self.registry.to_dict()
        for service in listed:  # what metrics label its routes with (see route_labels)
            service["route_templates"] = self.route_labels.templates(service["name"])
            service["state"] = self._live_state(service["name"])
        return JSONResponse({"services": listed})

    def _live_state(self, name: str) -> dict[str, Any]:
        """What the gateway has learned of a service: its breaker and each replica."""
        runtime = self._runtimes.get(name)
        entry = self.registry.get(name)
        if runtime is None or entry is None:
            return {"breaker": "closed", "replicas": []}  # not called yet
        now = time.monotonic()
        replicas = [
            {
                "url": r.url, "available": r.available(now), "healthy": r.healthy,
                "ejected_for_seconds": round(max(0.0, r.ejected_until - now), 1),
                "in_flight": r.outstanding, "failures_in_a_row": r.consecutive_failures,
            }
            for r in runtime.pool(entry)
        ]  # fmt: skip
        return {"breaker": runtime.breaker.state.value, "replicas": replicas}

    async def replicas(self, request: Request) -> Response:
        """``POST``: register ``{"url"}`` as a replica of the service; ``DELETE``: remove it."""
        from starlette.responses import JSONResponse

        name = request.path_params["name"]
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError as err:
            return JSONResponse({"detail": f"body is not JSON: {err}"}, status_code=400)
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return JSONResponse({"detail": 'body must be {"url": "http://..."}'}, status_code=422)
        url = data["url"]
        if request.method == "POST":
            try:
                entry = self.registry.register(name, url)
            except ConfigError as err:
                return JSONResponse({"detail": str(err), "field": err.field}, status_code=422)
            return JSONResponse(entry.to_dict(), status_code=201)
        if not self.registry.deregister(name, url):
            return JSONResponse(
                {"detail": f"{url!r} is not a replica of {name!r}"}, status_code=404
            )
        if self.registry.get(name) is None:  # its last replica: the service is gone
            self._runtimes.pop(name, None)
            self._learning.pop(name, None)
            self.route_labels.forget(name)
        return JSONResponse({"removed": url})

    def app(self) -> Starlette:
        """The ASGI app."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            checker = None
            if self.resilience.health_interval > 0:
                checker = HealthChecker(
                    self.all_replicas,
                    interval=self.resilience.health_interval,
                    verify=self._upstream_tls,
                )
                checker.start()
            for name in self.registry.names():  # learn route templates early
                entry = self.registry.get(name)
                if entry is not None:
                    self._learn_routes(entry)
            yield
            if checker is not None:
                await checker.stop()
            for task in list(self._tasks):
                task.cancel()
            await self.upstream.aclose()
            for close in self.closers:
                close()

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        face = [] if self.face is None else [
            Route("/v1/models", self._guard("v1", "/models", self.face.models)),
            Route("/v1/chat/completions",
                  self._guard("v1", "/chat/completions", self.face.chat_completions),
                  methods=["POST"]),
        ]  # fmt: skip
        app = Starlette(
            routes=[
                *face,
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", self.metrics_text),
                Route("/openapi.json", self.openapi),
                Route("/gateway/services", self._guard("gateway", "/services", self.services)),
                Route(
                    "/gateway/services/{name}/replicas",
                    self._guard("gateway", "/replicas", self.replicas),
                    methods=["POST", "DELETE"],
                ),
                Route("/{service}/{path:path}", self.proxy, methods=methods),
                Route("/{service}", self.proxy, methods=methods),  # not a redirect to /{service}/
            ],
            lifespan=lifespan,
            exception_handlers={404: _not_found, 405: _not_found},
        )
        app.state.gateway = self
        return app


def _log_access(
    request: Request, request_id: str, *, service: str, route: str, upstream: str,
    status: int, seconds: float, attempts: int,
) -> None:  # fmt: skip
    if access_log.isEnabledFor(logging.INFO):  # build the line only if someone reads it
        access_log.info(json.dumps({
            "request_id": request_id, "method": request.method, "service": service,
            "route": route, "upstream": upstream, "status": status,
            "ms": round(seconds * 1000, 2), "attempts": attempts,
        }))  # fmt: skip


def _failed(err: UpstreamError, entry: ServiceEntry, route: str, request_id: str) -> Response:
    """504 for a timeout, 502 for any other failure of a call that reached a replica."""
    if isinstance(err, UpstreamTimeout):
        limit = entry.timeout_for(route)
        return _problem(504, f"{entry.name!r} did not answer within {limit:g} s", request_id)
    return _problem(502, f"{entry.name!r} failed: {err}", request_id)


async def _relay(
    pieces: AsyncGenerator[bytes, None], on_end: Callable[[], None]
) -> AsyncIterator[bytes]:
    try:
        async for piece in pieces:
            yield piece
    finally:
        await pieces.aclose()  # the upstream connection is released or closed now
        on_end()


def _circuit_open(entry: ServiceEntry, runtime: ServiceRuntime, request_id: str) -> Response:
    """503 with the breaker's own ``Retry-After``: the service is failing, no call made."""
    reply = _problem(503, f"{entry.name!r} is failing; circuit open", request_id)
    reply.headers["retry-after"] = str(max(1, math.ceil(runtime.breaker.retry_after())))
    return reply


def _session_of(request: Request, route: str, body: bytes) -> str | None:
    return session_key(route, body, request.headers.get("content-type", ""))


def _with_query(request: Request, route: str) -> str:
    """``route`` with the client's query string, as sent (not re-encoded)."""
    query = request.scope.get("query_string", b"")
    return route + "?" + query.decode("latin-1") if query else route


def _length(value: str | None) -> dict[str, str] | None:
    return None if value is None else {"content-length": value}


def _reply(
    answer: UpstreamReply, request_id: str, *, on_end: Callable[[], None], head: bool = False
) -> Response:
    """The replica's answer for the client: hop-by-hop headers dropped, repeats kept; a
    streamed answer passed on piece by piece (``on_end`` when it is over)."""
    from starlette.responses import Response, StreamingResponse

    reply: Response
    if answer.stream is not None:
        reply = StreamingResponse(_relay(answer.stream, on_end), status_code=answer.status)
    elif head:  # no body, but the length the body would have: the replica's own
        length = next((v for k, v in answer.headers if k.lower() == "content-length"), None)
        reply = Response(status_code=answer.status, headers=_length(length))
    else:
        reply = Response(answer.content, status_code=answer.status)
    drop = _hop_by_hop(answer.headers) | {"x-request-id"}
    reply.raw_headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in answer.headers
        if k.lower() not in drop
    ]
    reply.raw_headers.append((b"x-request-id", request_id.encode()))
    return reply


def _upstream_headers(request: Request, request_id: str) -> list[tuple[str, str]]:
    """The client's headers for the hop (repeats kept, hop-by-hop ones dropped), with
    the request id, the next span of the trace and the client added to
    ``X-Forwarded-For``."""
    pairs = request.headers.items()
    drop = _hop_by_hop(pairs) | {"x-request-id", "traceparent", "x-forwarded-for"}
    headers = [(k, v) for k, v in pairs if k.lower() not in drop]
    headers.append(("x-request-id", request_id))
    headers.append(("traceparent", _traceparent(request.headers.get("traceparent"))))
    chain = request.headers.get("x-forwarded-for")
    if request.client is not None:
        chain = f"{chain}, {request.client.host}" if chain else request.client.host
    if chain:
        headers.append(("x-forwarded-for", chain))
    return headers


def _scoped_body(request: Request, body: bytes) -> bytes | GatewayError:
    """The body with its ``session`` moved into the caller's tenant (JSON objects only)."""
    principal = getattr(request.state, "principal", None)
    if principal is None or not body or "json" not in request.headers.get("content-type", ""):
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body  # the service answers bad JSON itself
    if not isinstance(data, dict) or not isinstance(data.get("session"), str):
        return body
    try:
        data["session"] = scoped_session(principal, data["session"])
    except GatewayError as err:
        return err
    return json.dumps(data).encode()


def _scoped_route(request: Request, route: str) -> str:
    """``/v1/sessions/<id>...`` with the id moved into the caller's tenant."""
    principal = getattr(request.state, "principal", None)
    prefix = "/v1/sessions/"
    if principal is None or not route.startswith(prefix):
        return route
    session, slash, rest = route[len(prefix) :].partition("/")
    try:
        return prefix + scoped_session(principal, session) + slash + rest
    except GatewayError:
        return route  # the service answers 404/422 for an id it cannot have


def _own_path_refused(request: Request, request_id: str, *, face: bool) -> Response:
    """A gateway path the proxy route caught: 405 with ``Allow`` when another method
    would do, else 404 naming the path (the proxy would otherwise take the gateway's
    own first segment for an unknown service)."""
    from starlette.routing import Match, Route

    allowed: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and not route.path.startswith("/{service}"):
            match, _ = route.matches({**request.scope, "method": "GET"})
            if match is not Match.NONE:
                allowed |= set(route.methods or ())
    path = request.url.path
    if allowed:
        reply = _problem(405, f"{request.method} is not allowed on {path}", request_id)
        reply.headers["allow"] = ", ".join(sorted(allowed))
        return reply
    if path.startswith("/v1/") and not face:
        detail = (
            f"no route {path}: the OpenAI-compatible face is off "
            "(no [[models]] or [[agents]] in the gateway's config)"
        )
        return _problem(404, detail, request_id)
    return _problem(404, f"no gateway route {path}", request_id)


async def _not_found(request: Request, err: Exception) -> Response:
    """Starlette's own 404/405 (a path no route takes), as JSON naming the path."""
    from starlette.exceptions import HTTPException

    status = err.status_code if isinstance(err, HTTPException) else 404
    detail = f"no route {request.url.path}"
    if status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    request_id = request.headers.get("x-request-id") or secrets.token_hex(12)
    reply = _problem(status, detail, request_id)
    if isinstance(err, HTTPException) and err.headers:
        reply.headers.update(err.headers)
    return reply


def _problem(status: int, detail: str, request_id: str) -> Response:
    from starlette.responses import JSONResponse

    headers = {"x-request-id": request_id}
    if status == 503:
        headers["retry-after"] = "1"
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def gateway_app(registry: ServiceRegistry, **options: Any) -> Starlette:
    """The gateway's ASGI app over ``registry`` (``options``: see :class:`Gateway`).

    Raises:
        ConfigError: a limit is out of range.
        MissingExtraError: Starlette, aiohttp or prometheus-client is missing
            (``llmagentos[gateway]``).
    """
    try:
        import starlette  # noqa: F401
    except ImportError as err:
        raise MissingExtraError("the gateway", "gateway", "starlette") from err
    return Gateway(registry, **options).app()
