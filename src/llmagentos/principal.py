"""Who is calling, as the gateway vouches for it to the services behind it.

The gateway authenticates a caller (an API key, a JWT) and hands the replica a
:class:`Principal` in one header, ``X-LLMAgentOS-Principal``, signed with HMAC-SHA256
under a secret the gateway and its services share (``LLMAGENTOS_PRINCIPAL_SECRET``).
The signature covers the principal, a short validity window, the request's method, its
target exactly as forwarded (path and query, still percent-encoded) and the digest of
its body. So a replica trusts nothing else the client sent: a header lifted from one
request is worthless on any other, and a request without a valid header carries no
tenant at all.

A service namespaces every session and stored state by ``principal.tenant`` itself,
whatever the gateway did or did not rewrite.

Example::

    signer = PrincipalSigner(secret)
    header = signer.sign(principal, method="POST", target="/v1/agent/step", body=body)
    ...  # on the replica
    principal = signer.verify(header, method="POST", target="/v1/agent/step", body=body)
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from llmagentos._secrets import secret_bytes
from llmagentos.exceptions import ConfigError, PrincipalError

__all__ = [
    "PRINCIPAL_HEADER",
    "SECRET_ENV",
    "Principal",
    "PrincipalSigner",
    "body_digest",
    "principal_secret",
]

PRINCIPAL_HEADER = "x-llmagentos-principal"
SECRET_ENV = "LLMAGENTOS_PRINCIPAL_SECRET"
_VERSION = "v1"
# Longest header accepted: a principal with many scopes fits well within it; anything
# longer is refused before it is decoded.
_MAX_HEADER = 8192
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling.

    Attributes:
        key_id: the API key's id, or ``jwt:<subject>`` for a bearer token.
        tenant: the tenant the caller acts for (1-32 of ``a-z0-9_-``).
        scopes: ``service:route`` shell-style patterns the caller may call.
    """

    key_id: str
    tenant: str
    scopes: tuple[str, ...]

    def can(self, service: str, route: str) -> bool:
        """Does any scope allow ``route`` on ``service``?"""
        for scope in self.scopes:
            service_pattern, _, route_pattern = scope.partition(":")
            if fnmatch.fnmatchcase(service, service_pattern) and fnmatch.fnmatchcase(
                route, route_pattern
            ):
                return True
        return False

    def require(self, service: str, route: str) -> None:
        """Raise a 403 :class:`~llmagentos.exceptions.AuthError` unless allowed."""
        from llmagentos.exceptions import AuthError

        if not self.can(service, route):
            raise AuthError("forbidden", f"key {self.key_id} has no scope for {service}:{route}")


def body_digest(body: bytes) -> str:
    """The SHA-256 of a request body, hex (what the signature binds the body by)."""
    return hashlib.sha256(body).hexdigest()


def principal_secret(value: str | bytes | None = None, *, env: str = SECRET_ENV) -> bytes | None:
    """The shared secret: ``value`` if given, else the environment variable ``env``.

    Raises:
        ConfigError: the secret is shorter than 16 bytes.
    """
    raw = value if value is not None else os.environ.get(env)
    return secret_bytes(raw, field="principal_secret")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PrincipalSigner:
    """Signs principals into headers (the gateway) and verifies them (a service).

    Args:
        secret: the shared secret (at least 16 bytes).
        ttl: seconds a signed header stays valid.
        skew: seconds of clock difference tolerated between gateway and replica.
        clock: the wall clock (tests pass a fake one).
    """

    def __init__(
        self,
        secret: str | bytes,
        *,
        ttl: float = 60.0,
        skew: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = principal_secret(secret)
        if key is None:
            raise ConfigError("principal_secret", "must not be empty")
        if ttl <= 0 or skew < 0:
            raise ConfigError("principal_ttl", f"ttl must be > 0 and skew >= 0 ({ttl}, {skew})")
        self._key = key
        self.ttl = ttl
        self.skew = skew
        self._clock = clock

    def _mac(self, payload: str) -> bytes:
        return hmac.digest(self._key, f"{_VERSION}.{payload}".encode(), hashlib.sha256)

    def sign(self, principal: Principal, *, method: str, target: str, body: bytes) -> str:
        """The header value vouching for ``principal`` on exactly this request."""
        now = self._clock()
        claims = {
            "k": principal.key_id, "t": principal.tenant, "s": list(principal.scopes),
            "iat": round(now, 3), "exp": round(now + self.ttl, 3),
            "m": method.upper(), "p": target, "b": body_digest(body),
        }  # fmt: skip
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{_VERSION}.{payload}.{_b64(self._mac(payload))}"

    def verify(self, header: str | None, *, method: str, target: str, body: bytes) -> Principal:
        """The principal the header vouches for on this request.

        Raises:
            PrincipalError: no header (``missing``), a header of the wrong form or
                signature (``invalid``), out of its validity window (``expired``), or
                signed for another request (``mismatch``).
        """
        if header is None or not header.strip():
            raise PrincipalError("missing", "no signed principal: call through the gateway")
        if len(header) > _MAX_HEADER:
            raise PrincipalError("invalid", f"the principal header is over {_MAX_HEADER} bytes")
        version, _, rest = header.strip().partition(".")
        payload, _, mark = rest.partition(".")
        if version != _VERSION or not payload or not mark:
            raise PrincipalError("invalid", "the principal header is not of the form v1.<p>.<s>")
        try:
            given = _unb64(mark)
        except (binascii.Error, ValueError) as err:
            raise PrincipalError("invalid", "the principal signature is not base64url") from err
        if not hmac.compare_digest(given, self._mac(payload)):
            raise PrincipalError("invalid", "the principal header's signature does not match")
        # Signed by the gateway from here on: its shape is ours, but check it anyway.
        try:
            claims = json.loads(_unb64(payload))
            principal = Principal(str(claims["k"]), str(claims["t"]), tuple(claims["s"]))
            issued, expires = float(claims["iat"]), float(claims["exp"])
            signed_for = (str(claims["m"]), str(claims["p"]), str(claims["b"]))
        except (ValueError, KeyError, TypeError, binascii.Error) as err:
            raise PrincipalError("invalid", "the signed principal cannot be read") from err
        if not _TENANT_RE.fullmatch(principal.tenant):
            raise PrincipalError("invalid", f"the signed tenant {principal.tenant!r} is malformed")
        now = self._clock()
        if now > expires + self.skew or issued > now + self.skew:
            raise PrincipalError("expired", "the signed principal is outside its validity window")
        if signed_for != (method.upper(), target, body_digest(body)):
            raise PrincipalError("mismatch", "the signed principal was issued for another request")
        return principal
