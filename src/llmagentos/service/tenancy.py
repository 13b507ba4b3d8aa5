"""Who calls a module service: the gateway's signed principal, verified at the door.

:class:`PrincipalGate` is a pure ASGI middleware. It reads the request's body (up to
``max_body_bytes``), verifies the ``X-LLMAgentOS-Principal`` header against the
request exactly as the replica received it (the method, ``raw_path`` and the query
string still percent-encoded, the body's bytes) with
:class:`~llmagentos.principal.PrincipalSigner`, and hands the handlers the verified
:class:`~llmagentos.principal.Principal` (:func:`caller`, and
``scope["state"]["principal"]``). Then it replays the body to the app.

- A header that fails verification is a 401 naming the reason, on every path.
- A header at a service that has no secret is a 401 too ("cannot verify"): a
  misconfigured deployment fails closed instead of mixing tenants.
- No header: the anonymous tenant (its own namespace, never another's), or a 401
  ``missing`` when the service requires a principal, except on :data:`OPEN_PATHS`
  (health, readiness, metrics and the OpenAPI document hold no tenant's data).

The tenant is all a handler needs: every session, stored state and listing is keyed
by (tenant, session id), so what the client wrote in a body or a path can only name
sessions of its own tenant.

The gate also notes what the request is (its method, request-target and body), so a
session store can tell an ``Idempotency-Key`` sent again with the same request from
one reused for another (:func:`request_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
from contextvars import ContextVar
from typing import Any

from llmagentos.exceptions import PrincipalError
from llmagentos.principal import PRINCIPAL_HEADER, SECRET_ENV, Principal, PrincipalSigner

__all__ = [
    "ANONYMOUS",
    "OPEN_PATHS",
    "PrincipalGate",
    "caller",
    "caller_tenant",
    "request_fingerprint",
]

#: The tenant of requests that carry no principal: no real tenant has this name.
ANONYMOUS = ""
#: Paths served without a principal even when one is required.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
DEFAULT_MAX_BODY_BYTES = 1 << 20
_HEADER = PRINCIPAL_HEADER.encode()
_CALLER: ContextVar[Principal | None] = ContextVar("llmagentos_service_caller", default=None)
# The request being handled: (method, request-target, body), hashed only when asked.
_REQUEST: ContextVar[tuple[str, str, bytes] | None] = ContextVar(
    "llmagentos_service_request", default=None
)


def caller() -> Principal | None:
    """The verified principal of the request being handled (None: anonymous)."""
    return _CALLER.get()


def caller_tenant() -> str:
    """The tenant the current request acts for (:data:`ANONYMOUS` without a principal)."""
    principal = _CALLER.get()
    return ANONYMOUS if principal is None else principal.tenant


def request_fingerprint() -> str | None:
    """What the current request is, as ``"<sha256> <METHOD> <target>"`` (None outside
    one): the digest covers the method, the request-target as received and the body's
    bytes, so the same request sent again has the same fingerprint and any other
    request (another route, another body) has another. No tenant in it: a session
    (and so the idempotency key stored with it) belongs to one tenant already."""
    request = _REQUEST.get()
    if request is None:
        return None
    method, target, body = request
    digest = hashlib.sha256()
    for part in (method.encode(), target.encode("latin-1"), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return f"{digest.hexdigest()} {method} {target}"


def raw_target(scope: Any) -> str:
    """The request-target as received: ``raw_path`` (+ ``?`` + the query when there is one)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw is not None else scope["path"]
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


class PrincipalGate:
    """Pure ASGI middleware: verify the signed principal, bound the body, replay it."""

    def __init__(
        self,
        app: Any,
        *,
        signer: PrincipalSigner | None,
        require: bool,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.app, self.signer, self.require = app, signer, require
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [value for name, value in scope["headers"] if name == _HEADER]
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _too_large(send, self.max_body_bytes)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await _too_large(send, self.max_body_bytes)
                return
        data = bytes(body)
        try:
            principal = self._verify(scope, headers, data)
        except PrincipalError as err:
            await _refuse(send, err)
            return
        scope.setdefault("state", {})["principal"] = principal
        token = _CALLER.set(principal)
        noted = _REQUEST.set((scope["method"], raw_target(scope), data))
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()  # then only the disconnect

        try:
            await self.app(scope, replay, send)
        finally:
            _REQUEST.reset(noted)
            _CALLER.reset(token)

    def _verify(self, scope: Any, headers: list[bytes], body: bytes) -> Principal | None:
        if not headers:
            if self.require and scope["path"] not in OPEN_PATHS:
                raise PrincipalError(
                    "missing", "this service requires a signed principal: call it through the "
                    "gateway",
                )  # fmt: skip
            return None
        if len(headers) > 1:
            raise PrincipalError("invalid", f"more than one {PRINCIPAL_HEADER} header")
        if self.signer is None:
            raise PrincipalError(
                "invalid",
                f"this service cannot verify a signed principal: it has no secret "
                f"({SECRET_ENV}); refusing rather than guessing the tenant",
            )
        return self.signer.verify(
            headers[0].decode("latin-1"),
            method=scope["method"],
            target=raw_target(scope),
            body=body,
        )


async def _answer(send: Any, status: int, content: dict[str, Any], extra: list[Any]) -> None:
    payload = json.dumps(content).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _refuse(send: Any, err: PrincipalError) -> None:
    challenge = [(b"www-authenticate", b'LLMAgentOS-Principal realm="llmagentos"')]
    content = {"detail": str(err), "reason": err.reason}
    await _answer(send, 401, content, challenge)


async def _too_large(send: Any, limit: int) -> None:
    detail = f"the request body is over max_body_bytes ({limit} bytes)"
    await _answer(send, 413, {"detail": detail, "field": "max_body_bytes"}, [])
