"""The API gateway: one front door that routes ``/{service}/{path}`` to a service's replicas.

What it does on every request, in order:

- admits it (:mod:`.admission`): a target or a header it could read differently from
  the replica (dot segments, encoded slashes, backslashes, empty segments, controls,
  over-long ids, repeated ``Content-Type``) is refused with a 4xx naming what is wrong,
  before routing, for every route;
- authenticates the caller when keys or JWTs are configured (:mod:`.guard`: failures
  remembered, costly checks rate-limited by address and claimed key id first), checks
  the scope for ``service:route`` (403), and spends from the caller's token bucket
  (429 with ``Retry-After``; a rate-limit store that fails lets the request through or
  answers 503, as configured);
- finds the service (unknown: 404 naming it and the known ones) and reads the body
  (413 over the size limit; a JSON media type must carry JSON: 400);
- forwards the exact target it was sent (still percent-encoded, never normalised) and
  the exact body, without the caller's credentials (``Authorization``, API key headers,
  cookies), with a request id, a W3C ``traceparent`` and, with auth on, the caller's
  principal signed for exactly that request (:mod:`llmagentos.principal`), which the
  service verifies and namespaces every session by. The gateway itself rewrites no
  session id;
- picks a replica (balancing, session affinity by tenant and session, breaker, retry
  budget: :mod:`.runtime`), with the service's timeout (504), failover for refused
  connections and retries for idempotent calls;
- writes one structured access-log line and Prometheus metrics per route and upstream.

The admin routes (:mod:`.admin`) take a credential of their own. ``/healthz``,
``/readyz`` and ``/metrics`` are the gateway's own.
"""

from __future__ import annotations

import math
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import httpx

from llmagentos.exceptions import (
    ConfigError,
    GatewayError,
    MissingExtraError,
    RateLimited,
    RateLimitUnavailable,
)
from llmagentos.gateway.admin import AdminRoutes
from llmagentos.gateway.admission import (
    AdmissionLimits,
    BodyTooLarge,
    read_body,
    read_json_body,
)
from llmagentos.gateway.affinity import session_key
from llmagentos.gateway.auth import ApiKeyStore
from llmagentos.gateway.balancer import Replica
from llmagentos.gateway.guard import CredentialGuard
from llmagentos.gateway.hop import (
    CREDENTIAL_HEADERS,
    problem,
    problem_bytes,
    raw_target,
    reply_from,
    signed_headers,
    upstream_headers,
)
from llmagentos.gateway.http1_hop import Http1Upstream
from llmagentos.gateway.jwt_auth import Credentials, JwtVerifier
from llmagentos.gateway.metrics import GatewayMetrics
from llmagentos.gateway.networks import ReplicaNetworks
from llmagentos.gateway.openai_face import OpenAIFace
from llmagentos.gateway.ratelimit import RateLimiter
from llmagentos.gateway.registry import RESERVED_NAMES, ServiceEntry, ServiceRegistry
from llmagentos.gateway.replies import (
    circuit_open,
    failed,
    log_access,
    own_path_refused,
)
from llmagentos.gateway.request_fields import client_host, header, new_id
from llmagentos.gateway.route_labels import RouteLabels, RouteLearner
from llmagentos.gateway.runtime import ResilienceSettings, ServiceRuntime
from llmagentos.gateway.upstream import (
    IDLE_TIMEOUT,
    HttpxUpstream,
    Upstream,
    UpstreamError,
    UpstreamRefused,
    tls_context,
)
from llmagentos.load_shedding import Shedding, SheddingLimits
from llmagentos.principal import Principal, PrincipalSigner

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["IDEMPOTENT_METHODS", "RATE_LIMIT_FAILURE", "Gateway", "gateway_app"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: What a failing rate-limit store means: let the request through, or answer 503.
RATE_LIMIT_FAILURE = ("open", "closed")


def _is_idempotent(method: str, route: str, entry: ServiceEntry, keyed: bool) -> bool:
    """Safe to send again: an idempotent method or route, or an ``Idempotency-Key``."""
    return method in IDEMPOTENT_METHODS or route in entry.idempotent_routes or keyed


class Gateway:
    """The gateway's state and handlers; :meth:`app` is the ASGI app.

    Args:
        registry: the services to route to (changed at run time by the admin routes).
        max_body_bytes: the largest request body accepted (larger: 413).
        retries: extra attempts on another replica for idempotent calls that failed
            after reaching a replica (refused connections are always re-routed).
        upstream: the HTTP client for the hop to replicas (default:
            :class:`~llmagentos.gateway.http1_hop.Http1Upstream`).
        upstream_ca_file: trust this PEM file's CAs for https replicas (and their health
            checks), beside the system's.
        upstream_idle_timeout: seconds an idle connection to a replica is kept for the
            next request (0: none is reused); under the replicas' own keep-alive, so the
            gateway closes it first.
        transport: an httpx transport for the upstream calls instead (tests put
            in-process ASGI apps behind the gateway this way).
        face: the OpenAI-compatible routes (``/v1/models``, ``/v1/chat/completions``,
            ``/v1/embeddings``)
            over the exposed models and agents, if any.
        keys: API keys (service keys and admin keys); with them every proxied request
            needs ``Authorization: Bearer <key>`` or an API key header (401 otherwise)
            and a scope for ``service:route`` (403 otherwise).
        jwt: accept bearer JWTs too (or only them, without ``keys``): tenant and scopes
            from the token's claims, with the same rules as keys.
        principal_secret: the secret shared with the services; with auth on, each
            forwarded request carries the caller's principal signed with it. Required
            with auth unless ``forward_unsigned``.
        forward_unsigned: with auth on but no secret, forward without any principal
            (the services then cannot tell tenants apart: an explicit opt-in).
        api_key_headers: headers that may carry a bare API key besides ``Authorization``
            (never forwarded, like every credential header).
        limiter: per-key (or per-client-address) token buckets: 429 with ``Retry-After``.
        rate_limit_failure: ``"open"`` (let requests through) or ``"closed"`` (503 with
            ``Retry-After``) when the limiter's store fails.
        auth_limits: :class:`~.guard.CredentialGuard` settings (costly checks per
            address and per key id, how long failures are remembered).
        admission: the longest target, path segment and ``session`` id admitted.
        replica_networks: where replicas registered at run time (and every connection
            the default upstream opens) may point; loopback by default.
        resilience: balancing, retry budget, breaker and ejection settings for every
            service (defaults: least-outstanding, 20% retries, 5 failures open the
            breaker for 30 s, 5 failures eject a replica).
        shedding: requests in flight at once and the queue past them, overall; a
            service's own ``max_in_flight`` limits it too (past them: 503 at once,
            with ``Retry-After``; :mod:`llmagentos.load_shedding`).

    Raises:
        ConfigError: a setting is out of range, or auth is on without a principal
            secret and without ``forward_unsigned``.
    """

    def __init__(
        self,
        registry: ServiceRegistry,
        *,
        max_body_bytes: int = 1_000_000,
        retries: int = 1,
        upstream: Upstream | None = None,
        upstream_ca_file: str | None = None,
        upstream_idle_timeout: float = IDLE_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        face: OpenAIFace | None = None,
        keys: ApiKeyStore | None = None,
        jwt: JwtVerifier | None = None,
        principal_secret: str | bytes | None = None,
        forward_unsigned: bool = False,
        api_key_headers: tuple[str, ...] = ("x-api-key",),
        limiter: RateLimiter | None = None,
        rate_limit_failure: str = "open",
        auth_limits: Mapping[str, Any] | None = None,
        admission: AdmissionLimits | None = None,
        replica_networks: ReplicaNetworks | None = None,
        resilience: ResilienceSettings | None = None,
        shedding: SheddingLimits | None = None,
    ) -> None:
        if max_body_bytes < 1:
            raise ConfigError("max_body_bytes", f"must be >= 1 (got {max_body_bytes})")
        if retries < 0:
            raise ConfigError("retries", f"must be >= 0 (got {retries})")
        if rate_limit_failure not in RATE_LIMIT_FAILURE:
            raise ConfigError(
                "rate_limit_failure", f"'open' or 'closed' (got {rate_limit_failure!r})"
            )
        self.registry = registry
        self.face = face
        self.keys = keys
        self.credentials = Credentials(keys, jwt) if keys is not None or jwt is not None else None
        self.guard = (
            CredentialGuard(self.credentials, **dict(auth_limits or {}))
            if self.credentials is not None
            else None
        )
        self.signer: PrincipalSigner | None = None
        if principal_secret is not None:
            self.signer = PrincipalSigner(principal_secret)
        elif self.credentials is not None and not forward_unsigned:
            raise ConfigError(
                "principal_secret",
                "auth is on but there is no principal secret: the services could not tell "
                "the callers' tenants apart. Set LLMAGENTOS_PRINCIPAL_SECRET (the same for "
                "the gateway and every service), or forward_unsigned = true to opt out",
            )
        self.key_headers = tuple(h.lower() for h in api_key_headers)
        self.credential_headers = CREDENTIAL_HEADERS | frozenset(self.key_headers)
        self.limiter = limiter
        self.rate_limit_failure = rate_limit_failure
        self.admission = admission or AdmissionLimits()
        self.replica_networks = replica_networks or ReplicaNetworks()
        self.resilience = resilience or ResilienceSettings()
        self.shedding = Shedding(
            shedding or SheddingLimits(), key=_service_of, key_limit=self._service_limit,
            what="the gateway", max_body_bytes=max_body_bytes,
        )  # fmt: skip
        self.runtimes: dict[str, ServiceRuntime] = {}
        self.max_body_bytes = max_body_bytes
        self.retries = retries
        self._upstream_tls: ssl.SSLContext | bool = True
        if upstream_ca_file is not None:
            self._upstream_tls = tls_context(upstream_ca_file)
        if upstream is None and transport is not None:
            upstream = HttpxUpstream(transport, idle_timeout=upstream_idle_timeout)
        elif upstream is None:
            upstream = Http1Upstream(
                ca_file=upstream_ca_file, networks=self.replica_networks,
                idle_timeout=upstream_idle_timeout,
            )  # fmt: skip
        self.upstream = upstream
        self.admin = AdminRoutes(self)
        self.closers: list[Callable[[], None]] = []  # run at shutdown, after the last request
        # Entered once the app starts, left at shutdown (shared state: shared_state.py).
        self.background: list[Callable[[], AbstractAsyncContextManager[None]]] = []
        self.meters = GatewayMetrics(lambda: self.guard, self.shedding)
        self.metrics = self.meters.registry
        self.route_labels = RouteLabels()
        self.route_learner = RouteLearner(self.route_labels, self.upstream, self.signer)

    # -- proxying -------------------------------------------------------------------------

    async def proxy(self, request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["service"]
        route = "/" + request.path_params.get("path", "")
        request_id = header(request, "x-request-id") or new_id(96)
        entry = self.registry.get(name)
        upstream, tried = "-", 0
        refused = await self._admit(request, name, route, request_id)
        if refused is not None:
            reply = refused
        elif name in RESERVED_NAMES:
            reply = own_path_refused(request, request_id, face=self.face is not None)
        elif entry is None:
            known = ", ".join(self.registry.names()) or "none"
            reply = problem(404, f"unknown service {name!r} (known: {known})", request_id)
        else:
            reply, upstream, tried = await self._read_and_forward(request, entry, route, request_id)
        seconds = time.perf_counter() - started
        # Labels are bounded: unknown names and raw paths would grow a series per request.
        if entry is None:
            labels = ("(unknown)", "-")
        else:
            labels = (name, self.route_labels.label(name, route))
            self.route_learner.learn(entry)
        self.meters.observe(labels, upstream, reply.status_code, seconds)
        log_access(
            request.method, request_id, service=name, route=route, upstream=upstream,
            status=reply.status_code, seconds=seconds, attempts=tried,
        )  # fmt: skip
        return reply

    async def _read_and_forward(
        self, request: Request, entry: ServiceEntry, route: str, request_id: str
    ) -> tuple[Response, str, int]:
        try:
            body = await read_body(request, self.max_body_bytes)
        except BodyTooLarge:
            detail = f"request body over {self.max_body_bytes} bytes"
            return problem(413, detail, request_id, field="body"), "-", 0
        try:
            data = read_json_body(
                body,
                content_type=header(request, "content-type"),
                content_encoding=header(request, "content-encoding"),
                limits=self.admission,
            )
        except GatewayError as err:
            return problem(err.status, str(err), request_id, field=err.field), "-", 0
        return await self._forward(
            request, entry, route, body=body, data=data, request_id=request_id
        )

    async def refuse_early(self, scope: Mapping[str, Any], send: Any, err: GatewayError) -> None:
        """Answer a request refused before routing (its target or headers), counted and
        logged like any other."""
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or secrets.token_hex(12)
        body = problem_bytes(err.status, str(err), err.field)
        await send({
            "type": "http.response.start", "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode("latin-1")),
            ],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})
        self.meters.observe(("(refused)", "-"), "-", err.status, 0.0)
        log_access(
            scope.get("method", "-"), request_id, service="(refused)", route="-", upstream="-",
            status=err.status, seconds=0.0, attempts=0,
        )  # fmt: skip

    def all_replicas(self) -> list[Replica]:
        """Every registered replica (what the active health checker polls)."""
        replicas: list[Replica] = []
        for name in self.registry.names():
            entry = self.registry.get(name)
            if entry is not None:
                replicas += self.runtime_for(entry).pool(entry)
        return replicas

    def forget(self, name: str) -> None:
        """Drop what was learned of a service that is gone."""
        self.runtimes.pop(name, None)
        self.route_learner.forget(name)
        self.shedding.forget(name)
        self.meters.forget(name)

    def runtime_for(self, entry: ServiceEntry) -> ServiceRuntime:
        runtime = self.runtimes.get(entry.name)
        if runtime is None:
            runtime = self.runtimes[entry.name] = ServiceRuntime(
                self.resilience, balancing=entry.balancing
            )
        return runtime

    def _plan(
        self, request: Request, runtime: ServiceRuntime, route: str, data: Any
    ) -> tuple[str | None, str, Principal | None]:
        """The affinity key (tenant and session), the raw target and the principal."""
        # Read from the scope's state dict: Starlette's State raises (and catches) an
        # AttributeError for a missing name, a cost on every open request.
        principal: Principal | None = request.scope.get("state", {}).get("principal")
        session = None
        if runtime.affinity is not None:
            session = session_key(route, data)
            if session is not None and principal is not None:
                session = f"{principal.tenant}\0{session}"  # tenants' s1s are not one session
        target = raw_target(request.scope)  # as sent: the replica decodes it, not us
        return session, target, principal

    async def _forward(
        self, request: Request, entry: ServiceEntry, route: str, *, body: bytes, data: Any,
        request_id: str,
    ) -> tuple[Response, str, int]:  # fmt: skip
        """Send to the replicas in turn; returns the reply, the last upstream, attempts.

        The service's breaker may refuse at once (503); a refused connection moves on to
        another replica for any method; a failure after the request reached a replica
        (an error, a timeout, a 5xx) is retried on another only for idempotent calls
        and only while the service's retry budget allows.
        """

        method = request.method
        runtime = self.runtime_for(entry)
        permit = runtime.breaker.acquire()
        if permit is None:
            return circuit_open(entry, runtime, request_id), "-", 0
        runtime.budget.record_request()
        headers = upstream_headers(request, request_id, credential_headers=self.credential_headers)
        idempotent = _is_idempotent(
            method, route, entry, header(request, "idempotency-key") is not None
        )
        session, target, principal = self._plan(request, runtime, route, data)
        tried: set[str] = set()
        attempts = 0
        failure: Response | None = None
        while True:
            replica = runtime.pick(entry, tried, session)
            if replica is None:
                permit.failure()
                detail = f"no replica of {entry.name!r} is available"
                return failure or problem(503, detail, request_id), "-", attempts
            tried.add(replica.url)
            attempts += 1
            hop_headers = signed_headers(
                headers, self.signer, principal, method=method, url=replica.url,
                target=target, body=body,
            )  # fmt: skip
            replica.begin()
            sent = time.perf_counter()
            streaming = False
            try:
                answer = await self.upstream.request(
                    method, replica.url + target, body=body, headers=hop_headers,
                    timeout=entry.timeout_for(route), replayable=idempotent,
                )  # fmt: skip
                streaming = answer.stream is not None
            except UpstreamRefused:
                runtime.record(replica, False, entry)
                continue  # nothing reached that replica: safe to go on, whatever the method
            except UpstreamError as err:
                runtime.record(replica, False, entry)
                failure = failed(err, entry, route, request_id)
                if idempotent and runtime.budget.can_retry():
                    continue  # kept as the answer if no other replica is left to ask
                permit.failure()
                return failure, replica.url, attempts
            finally:
                if not streaming:  # a stream is in flight on the replica until it ends
                    replica.end()
                hop = time.perf_counter() - sent
                self.meters.observe_hop(entry.name, replica.url, hop)
            ok = answer.status < 500
            runtime.record(replica, ok, entry)
            head = method == "HEAD"
            reply = reply_from(answer, request_id, on_end=replica.end, head=head)
            if not ok and idempotent and runtime.budget.can_retry():
                failure = reply  # kept in case no other replica is left to ask
                continue
            permit.record(ok)
            return reply, replica.url, attempts

    # -- admission ------------------------------------------------------------------------

    def presented_credential(self, request: Request) -> str | None:
        """The credential a request presents: ``Authorization``, else an API key header.

        Raises:
            GatewayError: 400 when it presents more than one.
        """
        presented = [
            (name, value)
            for name in ("authorization", *self.key_headers)
            if (value := header(request, name)) is not None
        ]
        if len(presented) > 1:
            names = ", ".join(name for name, _ in presented)
            raise GatewayError(400, f"send one credential, not several ({names})", field=names)
        return presented[0][1] if presented else None

    def refusal(self, err: GatewayError, request_id: str) -> Response:
        """The answer to a refused request: its status, detail and field, with
        ``WWW-Authenticate`` on a 401 and ``Retry-After`` on a 429/503."""
        reply = problem(err.status, str(err), request_id, field=err.field)
        if err.status == 401:
            reply.headers["www-authenticate"] = 'Bearer realm="llmagentos"'
        if isinstance(err, RateLimited):
            reply.headers["retry-after"] = str(max(1, math.ceil(err.retry_after)))
        return reply

    async def _admit(
        self, request: Request, service: str, route: str, request_id: str
    ) -> Response | None:
        """Authenticate, authorise and rate-limit; the refusal, or ``None`` to go on."""
        client = client_host(request) or "-"
        principal = None
        if self.guard is not None:
            try:
                principal = await self.guard.principal(self.presented_credential(request), client)
                principal.require(service, route)
            except GatewayError as err:
                return self.refusal(err, request_id)
            request.state.principal = principal
        who = principal.key_id if principal is not None else f"ip:{client}"
        return await self._limit(who, request_id)

    async def _limit(self, who: str, request_id: str) -> Response | None:
        if self.limiter is None:
            return None
        try:
            decision = await self.limiter.take(who)
        except RateLimitUnavailable as err:
            self.meters.rate_limit_errors.inc()
            if self.rate_limit_failure == "open":
                return None
            return problem(503, str(err), request_id)  # with Retry-After
        if decision.allowed:
            return None
        return self.refusal(RateLimited(f"rate limit reached for {who}", decision.retry_after),
                            request_id)  # fmt: skip

    def _guard(
        self,
        service: str,
        route: str,
        handler: Callable[[Request], Awaitable[Response]],
        *,
        admin: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind the same keys and limits as the proxied routes (``admin``:
        behind the admin credential instead)."""

        async def guarded(request: Request) -> Response:
            started = time.perf_counter()
            request_id = request.headers.get("x-request-id") or secrets.token_hex(12)
            if admin:
                refused = await self.admin.admit(request, request_id)
                if refused is None:
                    client = request.client.host if request.client is not None else "-"
                    refused = await self._limit(f"admin:{client}", request_id)
            else:
                refused = await self._admit(request, service, route, request_id)
            reply = refused if refused is not None else await handler(request)
            reply.headers.setdefault("x-request-id", request_id)
            seconds = time.perf_counter() - started  # a stream: until its headers
            self.meters.observe((service, route), "-", reply.status_code, seconds)
            log_access(
                request.method, request_id, service=service, route=route, upstream="-",
                status=reply.status_code, seconds=seconds, attempts=0,
            )  # fmt: skip
            return reply

        return guarded

    def app(self) -> Starlette:
        """The ASGI app: the gateway's routes, middleware and lifespan
        (:mod:`llmagentos.gateway.starlette_app`)."""
        from llmagentos.gateway.starlette_app import starlette_app

        return starlette_app(self)

    def _service_limit(self, name: str) -> int | None:
        entry = self.registry.get(name)
        return None if entry is None else entry.max_in_flight


def _service_of(scope: dict[str, Any]) -> str | None:
    """The service a request is for: its first path segment."""
    path: str = scope["path"]
    end = path.find("/", 1)
    return path[1:end] if end > 0 else path[1:] or None


def gateway_app(registry: ServiceRegistry, **options: Any) -> Starlette:
    """The gateway's ASGI app over ``registry`` (``options``: see :class:`Gateway`).

    Raises:
        ConfigError: a limit is out of range, or auth is on without a principal secret.
        MissingExtraError: Starlette, aiohttp or prometheus-client is missing
            (``llmagentos[gateway]``).
    """
    try:
        import starlette  # noqa: F401
    except ImportError as err:
        raise MissingExtraError("the gateway", "gateway", "starlette") from err
    return Gateway(registry, **options).app()
