"""Bearer JWTs from an identity provider, beside (or instead of) the gateway's API keys.

A token is checked with PyJWT: its signature (a shared HS secret, a PEM public key, or
the provider's JWKS URL), its expiry (``exp`` required), and its audience and issuer
when configured. The caller's tenant comes from a claim (``tenant`` by default) and
its scopes from another (``scope``: space-separated, as OAuth 2 writes them, or a
list), with the same ``service:route`` patterns as API keys. Every failure is a 401
that says what was wrong with the token (never a 500).

:class:`Credentials` puts both kinds behind one ``authenticate``: a bearer value with
two dots is a JWT, anything else an API key.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmagentos.exceptions import AuthError, ConfigError, MissingExtraError
from llmagentos.gateway.auth import ApiKeyStore, Principal, check_scope, check_tenant, key_id_of
from llmagentos.gateway.clock import Clock, monotonic
from llmagentos.gateway.jwks import JwksKeys

__all__ = ["Credentials", "JwtVerifier"]

_SYMMETRIC = ("HS256", "HS384", "HS512")
_CACHE_SIZE = 4096
_CACHE_SECONDS = 300.0


class JwtVerifier:
    """Check bearer JWTs and turn their claims into a :class:`Principal`.

    Args:
        secret: the shared secret of HS256/384/512 tokens.
        public_key: a PEM public key (RS*, ES*, PS*, EdDSA tokens).
        jwks_url: the provider's JSON Web Key Set (keys fetched and cached by PyJWT).
        algorithms: the accepted algorithms (never ``none``).
        audience, issuer: required values of ``aud`` and ``iss``, when given.
        tenant_claim, scope_claim: where the tenant and the scopes are.
        leeway_seconds: clock skew allowed on ``exp`` and ``nbf``.
        jwks_refresh_seconds: the shortest time between two fetches of the JWKS.
        wall_clock: the time of day (tests pass a fake one).
        clock: monotonic seconds, for the JWKS refresh (tests pass a manual clock).

    Raises:
        ConfigError: no key or more than one, or algorithms that do not fit the key.
        MissingExtraError: PyJWT is not installed (extra ``gateway``).
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        jwks_url: str | None = None,
        algorithms: Sequence[str] = ("HS256",),
        audience: str | None = None,
        issuer: str | None = None,
        tenant_claim: str = "tenant",
        scope_claim: str = "scope",
        leeway_seconds: float = 30.0,
        jwks_refresh_seconds: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
        clock: Clock = monotonic,
    ) -> None:
        try:
            import jwt
        except ImportError as err:
            raise MissingExtraError("JWT auth", "gateway", "pyjwt") from err
        sources = [s for s in (secret, public_key, jwks_url) if s]
        if len(sources) != 1:
            raise ConfigError("gateway.jwt", "give exactly one of secret, public_key, jwks_url")
        algorithms = tuple(algorithms)
        if not algorithms or any(a.lower() == "none" for a in algorithms):
            raise ConfigError("gateway.jwt.algorithms", f"name real algorithms (got {algorithms})")
        symmetric = [a for a in algorithms if a in _SYMMETRIC]
        if secret and len(symmetric) != len(algorithms):
            raise ConfigError("gateway.jwt.algorithms", "a secret signs HS256/384/512 only")
        if not secret and symmetric:
            raise ConfigError("gateway.jwt.algorithms", "HS* tokens need a secret, not a key")
        self._jwt = jwt
        self._key: Any = secret or public_key
        self.jwks = (
            JwksKeys(jwks_url, min_refresh_seconds=jwks_refresh_seconds, clock=clock)
            if jwks_url
            else None
        )
        self._wall = wall_clock
        self._lock = threading.Lock()
        # SHA-256 of a verified token -> (its principal, until when it may be reused)
        self._verified: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self.algorithms = list(algorithms)
        self.audience, self.issuer = audience, issuer
        self.tenant_claim, self.scope_claim = tenant_claim, scope_claim
        self.leeway = leeway_seconds

    def claimed_subject(self, token: str) -> str | None:
        """The ``sub`` a token claims, unverified (for rate limits only), or ``None``."""
        try:
            claims = self._jwt.decode(token, options={"verify_signature": False})
        except (self._jwt.PyJWTError, ValueError):
            return None
        subject = claims.get("sub") if isinstance(claims, dict) else None
        return str(subject)[:64] if subject is not None else None

    def is_cached(self, token: str) -> bool:
        """Was this token verified before, and may that still be reused?"""
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            entry = self._verified.get(digest)
        return entry is not None and entry[1] > self._wall()

    def authenticate(self, token: str) -> Principal:
        """The caller a token names.

        Raises:
            AuthError: 401 ``malformed`` (bad signature, expired, wrong audience or
                issuer, missing claims, a key the provider does not publish).
            GatewayError: 503 when the provider's JWKS could never be fetched.
        """
        digest = hashlib.sha256(token.encode()).digest()
        now = self._wall()
        with self._lock:
            entry = self._verified.get(digest)
            if entry is not None and entry[1] > now:
                self._verified.move_to_end(digest)
                return entry[0]
        jwt = self._jwt
        try:
            key = self._key
            if self.jwks is not None:
                key = self.jwks.key_for(jwt.get_unverified_header(token).get("kid"))
            claims = jwt.decode(
                token, key, algorithms=self.algorithms, audience=self.audience,
                issuer=self.issuer, leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )  # fmt: skip
        except jwt.ExpiredSignatureError as err:
            raise AuthError("malformed", "the token has expired") from err
        except (jwt.PyJWTError, ValueError) as err:
            raise AuthError("malformed", f"the token was refused: {err}") from err
        principal = self._principal(claims)
        until = min(float(claims["exp"]), now + _CACHE_SECONDS)
        with self._lock:
            self._verified[digest] = (principal, until)
            if len(self._verified) > _CACHE_SIZE:
                self._verified.popitem(last=False)
        return principal

    def _principal(self, claims: dict[str, Any]) -> Principal:
        tenant = claims.get(self.tenant_claim)
        raw = claims.get(self.scope_claim, "")
        scopes = raw.split() if isinstance(raw, str) else raw
        try:
            if not isinstance(tenant, str):
                raise ConfigError(self.tenant_claim, "missing")
            check_tenant(tenant)
            if not isinstance(scopes, list) or not scopes:
                raise ConfigError(self.scope_claim, "no scopes")
            checked = tuple(check_scope(str(s)) for s in scopes)
        except ConfigError as err:
            raise AuthError(
                "malformed", f"the token's {self.tenant_claim!r}/{self.scope_claim!r} claims: {err}"
            ) from err
        subject = str(claims.get("sub", "anonymous"))[:64]
        return Principal(f"jwt:{subject}", tenant, checked)


def _token(header_value: str | None) -> str:
    value = (header_value or "").strip()
    scheme, _, rest = value.partition(" ")
    return rest.strip() if rest and scheme.lower() == "bearer" else value


class Credentials:
    """API keys and JWTs behind one ``authenticate(authorization_header)``."""

    def __init__(self, keys: ApiKeyStore | None = None, jwt: JwtVerifier | None = None) -> None:
        if keys is None and jwt is None:
            raise ConfigError("gateway", "credentials need API keys, a JWT verifier or both")
        self.keys, self.jwt = keys, jwt

    def authenticate(self, header_value: str | None) -> Principal:
        """The caller behind ``Authorization: Bearer <API key or JWT>``.

        Raises:
            AuthError: 401 (missing, malformed, unknown, revoked, refused token); 403
                for an admin key.
        """
        token = _token(header_value)
        if token.count(".") == 2:
            if self.jwt is None:
                raise AuthError("malformed", "this gateway takes API keys, not JWTs")
            return self.jwt.authenticate(token)
        if self.keys is None:
            what = "no token" if not token else "not a JWT"
            raise AuthError(
                "missing" if not token else "malformed",
                f"{what}: send 'Authorization: Bearer <JWT>'",
            )
        return self.keys.authenticate(header_value)

    def authenticate_admin(self, header_value: str | None) -> str:
        """The id of the admin key behind the header (admin keys live in the key store).

        Raises:
            AuthError: 401 as :meth:`authenticate`; 403 for anything but an admin key.
        """
        if self.keys is None:
            raise AuthError("forbidden", "this gateway has no key store, so no admin keys")
        return self.keys.authenticate_admin(header_value)

    def is_cached(self, header_value: str | None) -> bool:
        """Would checking this credential cost only a hash (no scrypt, no signature)?"""
        token = _token(header_value)
        if not token:
            return True
        if token.count(".") == 2:
            return self.jwt is None or self.jwt.is_cached(token)
        return self.keys is None or self.keys.is_cached(header_value)

    def claimed_id(self, header_value: str | None) -> str:
        """Who the credential claims to be, unverified: the bucket its checks spend from."""
        token = _token(header_value)
        key_id = key_id_of(token)
        if key_id is not None:
            return f"key:{key_id}"
        subject = self.jwt.claimed_subject(token) if self.jwt is not None else None
        if subject is not None:
            return f"jwt:{subject}"
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def read_public_key(path: Path) -> str:
    """A PEM public key file's text (``ConfigError`` naming the file if unreadable)."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError("gateway.jwt.public_key", f"{path}: {err}") from err
