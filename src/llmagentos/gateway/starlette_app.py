"""The gateway as a Starlette app: its own routes, the middleware and the lifespan.

:class:`~llmagentos.gateway.app.Gateway` holds what the gateway does; this module is
how it is served: the probes, ``/metrics`` and ``/openapi.json``, the admin and
OpenAI-compatible routes, the proxy routes, the middleware in their order (shedding
outermost, then tracing, admission, and the dispatch that sends proxied requests
straight to the proxy, all outside Starlette's own), and what starts and stops with the
app (health checks, route templates, background tasks, the upstream client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from llmagentos.gateway.admission import AdmissionMiddleware
from llmagentos.gateway.balancer import HealthChecker
from llmagentos.gateway.dispatch import PROXY_METHODS, ProxyDispatch
from llmagentos.gateway.openapi import gateway_openapi
from llmagentos.gateway.replies import not_found
from llmagentos.load_shedding import shed_first
from llmagentos.telemetry.asgi import TracingMiddleware

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from llmagentos.gateway.app import Gateway

__all__ = ["starlette_app"]


def starlette_app(gateway: Gateway) -> Starlette:
    """The ASGI app serving ``gateway``."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        return JSONResponse({"status": "ready", "services": gateway.registry.names()})

    async def metrics_text(request: Request) -> Response:
        gateway.meters.follow(gateway.runtimes)
        return Response(generate_latest(gateway.metrics), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(gateway_openapi(face=gateway.face is not None))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        checker = None
        if gateway.resilience.health_interval > 0:
            checker = HealthChecker(
                gateway.all_replicas,
                interval=gateway.resilience.health_interval,
                verify=gateway._upstream_tls,
            )
            checker.start()
        for name in gateway.registry.names():  # learn route templates early
            entry = gateway.registry.get(name)
            if entry is not None:
                gateway.route_learner.learn(entry)
        async with AsyncExitStack() as running:
            for start in gateway.background:
                await running.enter_async_context(start())
            yield
        if checker is not None:
            await checker.stop()
        gateway.route_learner.cancel()
        await gateway.upstream.aclose()
        for close in gateway.closers:
            close()

    guard, face = gateway._guard, gateway.face
    methods = sorted(PROXY_METHODS)
    openai_routes = [] if face is None else [
        Route("/v1/models", guard("v1", "/models", face.models)),
        Route("/v1/chat/completions", guard("v1", "/chat/completions", face.chat_completions),
              methods=["POST"]),
        Route("/v1/embeddings", guard("v1", "/embeddings", face.embeddings), methods=["POST"]),
    ]  # fmt: skip
    app = Starlette(
        routes=[
            *openai_routes,
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_text),
            Route("/openapi.json", openapi),
            Route(
                "/gateway/services",
                guard("gateway", "/services", gateway.admin.services, admin=True),
            ),
            Route(
                "/gateway/services/{name}/replicas",
                guard("gateway", "/replicas", gateway.admin.replicas, admin=True),
                methods=["POST", "DELETE"],
            ),
            Route("/{service}/{path:path}", gateway.proxy, methods=methods),
            Route("/{service}", gateway.proxy, methods=methods),  # not a redirect to /{service}/
        ],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found},
    )
    app.state.gateway = gateway
    build = app.build_middleware_stack

    def gateway_first() -> Any:
        # Outside Starlette's error middleware (which add_middleware cannot reach): a
        # proxied request then skips it and its wrapper around every message sent; the
        # proxy answers its own failures with a 500 (dispatch.py).
        dispatch = ProxyDispatch(build(), registry=gateway.registry, proxy=gateway.proxy)
        admitted = AdmissionMiddleware(dispatch, limits=gateway.admission,
                                       refuse=gateway.refuse_early)  # fmt: skip
        return TracingMiddleware(admitted, service="gateway", name_by_route=False)

    app.build_middleware_stack = gateway_first  # type: ignore[method-assign]
    shed_first(app, gateway.shedding)
    return app
