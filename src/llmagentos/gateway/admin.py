"""The gateway's admin routes: the registry, behind a credential of their own.

``GET /gateway/services`` lists the registry and each service's live state;
``POST``/``DELETE /gateway/services/{name}/replicas`` with ``{"url": ...}`` add and
remove replicas. Who may call them:

- a gateway with a key store takes only admin keys (``llmagentos keys create
  --admin``): no service key opens them, whatever its scopes (``*:*`` included);
- a gateway without one (no auth, or JWTs only) answers them only to loopback clients
  (403 otherwise). Behind a proxy on the same host every client is loopback: give such
  a gateway a key store;
- the routes that change the registry take only ``application/json`` bodies (415
  otherwise), so a cross-site form or ``text/plain`` POST from a browser changes
  nothing;
- a replica's URL must resolve inside ``[gateway] replica_networks``
  (:mod:`.networks`), so a registry call cannot send a service's traffic anywhere else.

Changes go to this process's registry, or, with shared state, to Redis for every
process (:mod:`.shared_registry`). ``GET /gateway/services`` names the process that
answered (``worker.pid``) and whether its shared state reaches Redis.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from llmagentos.exceptions import ConfigError, GatewayError
from llmagentos.gateway.admission import is_json_type
from llmagentos.gateway.hop import problem
from llmagentos.gateway.registry import ServiceEntry, ServiceRegistry, check_replica_url

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from llmagentos.gateway.app import Gateway

__all__ = ["AdminRoutes", "LocalChanges", "RegistryChanges", "is_loopback"]

_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_BODY = 16_384


def is_loopback(host: str | None) -> bool:
    """Is ``host`` (a client address) a loopback address, IPv4-mapped ones included?"""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _plain_json(content_type: str | None) -> bool:
    """``application/json`` itself (parameters allowed), not any ``+json`` type."""
    if not is_json_type(content_type):
        return False
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json"


class RegistryChanges(Protocol):
    """Where the admin routes' changes go."""

    async def register(self, name: str, url: str) -> ServiceEntry: ...

    async def deregister(self, name: str, url: str) -> bool: ...


class LocalChanges:
    """Changes to this process's registry alone."""

    def __init__(self, registry: ServiceRegistry) -> None:
        self.registry = registry

    async def register(self, name: str, url: str) -> ServiceEntry:
        return self.registry.register(name, url)

    async def deregister(self, name: str, url: str) -> bool:
        return self.registry.deregister(name, url)


class AdminRoutes:
    """The admin handlers of one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.changes: RegistryChanges = LocalChanges(gateway.registry)
        self.shared: Callable[[], dict[str, str]] | None = None  # Redis up or down, by user

    async def admit(self, request: Request, request_id: str) -> Response | None:
        """The refusal of an admin request, or ``None`` to go on."""
        gateway = self.gateway
        client = request.client.host if request.client is not None else None
        if gateway.keys is not None and gateway.guard is not None:
            try:
                presented = gateway.presented_credential(request)
                await gateway.guard.admin(presented, client or "-")
            except GatewayError as err:
                return gateway.refusal(err, request_id)
        elif not is_loopback(client):
            detail = (
                "the admin routes answer only loopback clients on a gateway without a key "
                "store (give it one, with admin keys: llmagentos keys create --admin)"
            )
            return problem(403, detail, request_id)
        if request.method in _CHANGES and not _plain_json(request.headers.get("content-type")):
            detail = "the admin routes take only Content-Type: application/json"
            return problem(415, detail, request_id, field="content-type")
        return None

    async def services(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        gateway = self.gateway
        listed = gateway.registry.to_dict()
        for service in listed:  # what metrics label its routes with (see route_labels)
            service["route_templates"] = gateway.route_labels.templates(service["name"])
            service["state"] = self._live_state(service["name"])
        worker = {"pid": os.getpid(), "shared": None if self.shared is None else self.shared()}
        return JSONResponse({"services": listed, "worker": worker})

    def _live_state(self, name: str) -> dict[str, Any]:
        """What the gateway has learned of a service: its breaker and each replica."""
        runtime = self.gateway.runtimes.get(name)
        entry = self.gateway.registry.get(name)
        if runtime is None or entry is None:
            return {"breaker": "closed", "replicas": []}  # not called yet
        now = time.monotonic()
        replicas = [
            {
                "url": r.url, "available": r.available(now), "healthy": r.healthy,
                "ejected_for_seconds": round(max(0.0, r.ejected_until - now), 1),
                "in_flight": r.outstanding, "failures_in_a_row": r.consecutive_failures,
                "calls": r.calls,
            }
            for r in runtime.pool(entry)
        ]  # fmt: skip
        return {"breaker": runtime.breaker.state.value, "replicas": replicas}

    async def replicas(self, request: Request) -> Response:
        """``POST``: register ``{"url"}`` as a replica of the service; ``DELETE``: remove it."""
        from starlette.responses import JSONResponse

        gateway = self.gateway
        name = request.path_params["name"]
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_BODY:  # a URL fits in far less
                return JSONResponse(
                    {"detail": f"body over {_MAX_BODY} bytes", "field": "body"}, status_code=413
                )
        try:
            data = json.loads(body or b"null")
        except (ValueError, RecursionError) as err:
            return JSONResponse(
                {"detail": f"body is not JSON: {err}", "field": "body"}, status_code=400
            )
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return JSONResponse(
                {"detail": 'body must be {"url": "http://..."}', "field": "url"}, status_code=422
            )
        url = data["url"]
        if request.method == "POST":
            try:
                check_replica_url(url)  # its form first: no lookup for a URL refused anyway
                await gateway.replica_networks.check_url_async(url)
                entry = await self.changes.register(name, url)
            except GatewayError as err:
                return _refused(err)
            except ConfigError as err:
                return JSONResponse({"detail": str(err), "field": err.field}, status_code=422)
            return JSONResponse(entry.to_dict(), status_code=201)
        try:
            found = await self.changes.deregister(name, url)
        except GatewayError as err:
            return _refused(err)
        if not found:
            return JSONResponse(
                {"detail": f"{url!r} is not a replica of {name!r}", "field": "url"},
                status_code=404,
            )
        if gateway.registry.get(name) is None:  # its last replica: the service is gone
            gateway.forget(name)
        return JSONResponse({"removed": url})


def _refused(err: GatewayError) -> Response:
    """A registry change refused: its status, and ``Retry-After`` when Redis is down."""
    from starlette.responses import JSONResponse

    if err.status == 503:
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"retry-after": "1"})
    return JSONResponse({"detail": str(err), "field": err.field or "url"}, status_code=err.status)
