"""API keys with scopes, stored hashed, and tenant isolation.

A key reads ``lak_<id>_<secret>``: the id finds the one stored record to check, so a
lookup never scans every key; the secret is stored only as a salted scrypt hash and
compared in constant time. The plaintext is returned once, by :meth:`ApiKeyStore.create_key`.

Each key belongs to one tenant and carries scopes ``service:route`` (shell-style
patterns: ``planner:*``, ``*:read``, ``*:*``). The gateway asks ``principal.can(service,
route)``; a missing, malformed, unknown or revoked key is a 401, a valid key without
the scope a 403.

Tenants share services, so every session/agent id the gateway forwards is prefixed with
the caller's tenant (:func:`scoped_session`): tenant A's ``s1`` reaches the upstream as
``a:s1``, and nothing A can send turns into one of B's ids.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from llmagentos.exceptions import AuthError, ConfigError, GatewayError
from llmagentos.principal import Principal

__all__ = [
    "ApiKeyInfo",
    "ApiKeyStore",
    "Principal",
    "scoped_session",
    "unscoped_session",
]

KEY_PREFIX = "lak"
_KEY_RE = re.compile(r"^lak_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_SCOPE_PART_RE = re.compile(r"^[A-Za-z0-9_.*/?\[\]-]{1,128}$")
_SESSION_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")  # what module services accept
_TENANT_SEP = ":"  # never in a tenant name, so the first ':' always ends the tenant

# scrypt's default cost (N=2**14, 16 MiB): costly for an offline guesser, ~40 ms per
# uncached check. Keys are 256-bit random, so this guards a leaked file, not weak secrets.
DEFAULT_SCRYPT_N = 2**14
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """A stored key, without anything secret (for listing keys)."""

    key_id: str
    tenant: str
    scopes: tuple[str, ...]
    created: float
    revoked: bool


def check_scope(scope: str) -> str:
    service, sep, route = scope.partition(":")
    if not sep or not _SCOPE_PART_RE.fullmatch(service) or not _SCOPE_PART_RE.fullmatch(route):
        raise ConfigError("scopes", f"a scope reads 'service:route' (patterns), got {scope!r}")
    return scope


def check_tenant(tenant: str) -> str:
    if not _TENANT_RE.fullmatch(tenant):
        raise ConfigError("tenant", f"tenants are 1-32 of a-z, 0-9, '-', '_' (got {tenant!r})")
    return tenant


def _hash(secret: str, salt: bytes, n: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=8, p=1, maxmem=2**27, dklen=32)


class ApiKeyStore:
    """API keys in one SQLite file (``":memory:"`` by default, for tests).

    Several gateway processes may share the file: a revocation made by one is seen by
    the others on their next check of that key. ``scrypt_n`` is the hash cost of new
    keys (a power of two); each key keeps the cost it was made with.
    """

    def __init__(self, path: str | Path = ":memory:", *, scrypt_n: int = DEFAULT_SCRYPT_N) -> None:
        if scrypt_n < 2 or scrypt_n & (scrypt_n - 1):
            raise ConfigError("scrypt_n", f"must be a power of two >= 2, got {scrypt_n}")
        self.scrypt_n = scrypt_n
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " scopes TEXT NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL,"
            " n INTEGER NOT NULL, created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)"
        )
        # digest of a presented key -> key id, for keys whose scrypt check passed: a
        # repeat request costs one SHA-256 instead of one scrypt. Memory only.
        self._verified: OrderedDict[bytes, str] = OrderedDict()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create_key(self, tenant: str, scopes: Iterable[str]) -> str:
        """Make a key and return its plaintext: the only time it is ever available."""
        check_tenant(tenant)
        scope_list = [check_scope(s) for s in scopes]
        if not scope_list:
            raise ConfigError("scopes", "a key needs at least one scope")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        digest = _hash(secret, salt, self.scrypt_n)
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (key_id, tenant, scopes, salt, hash, n, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, tenant, json.dumps(scope_list), salt, digest, self.scrypt_n, time.time()),
            )
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such key."""
        with self._lock:
            cursor = self._db.execute("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", (key_id,))
            return cursor.rowcount > 0

    def list_keys(self, tenant: str | None = None) -> list[ApiKeyInfo]:
        """The stored keys (all, or one tenant's), oldest first."""
        query = "SELECT key_id, tenant, scopes, created, revoked FROM api_keys"
        args: tuple[str, ...] = ()
        if tenant is not None:
            query, args = query + " WHERE tenant = ?", (tenant,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created", args).fetchall()
        return [ApiKeyInfo(r[0], r[1], tuple(json.loads(r[2])), r[3], bool(r[4])) for r in rows]

    def authenticate(self, header_value: str | None) -> Principal:
        """The caller behind ``Authorization: Bearer <key>`` (or a bare key, as in ``X-API-Key``).

        Raises:
            AuthError: 401 with reason ``missing``, ``malformed``, ``unknown`` (no such
                key, or a wrong secret) or ``revoked``.
        """
        if header_value is None or not header_value.strip():
            raise AuthError("missing", "no API key: send 'Authorization: Bearer lak_...'")
        value = header_value.strip()
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() == "bearer":
            value = rest.strip()
        match = _KEY_RE.fullmatch(value)
        if match is None:
            raise AuthError("malformed", "the API key is not of the form lak_<id>_<secret>")
        key_id, secret = match.groups()
        with self._lock:
            row = self._db.execute(
                "SELECT tenant, scopes, salt, hash, n, revoked FROM api_keys WHERE key_id = ?",
                (key_id,),
            ).fetchone()
        if row is None:
            raise AuthError("unknown", "unknown API key")
        tenant, scopes, salt, stored, n, revoked = row
        digest = hashlib.sha256(value.encode()).digest()
        with self._lock:
            cached = self._verified.get(digest) == key_id
        if not cached:
            if not hmac.compare_digest(_hash(secret, salt, n), stored):
                raise AuthError("unknown", "unknown API key")  # same answer: no oracle
            with self._lock:
                self._verified[digest] = key_id
                if len(self._verified) > _CACHE_SIZE:
                    self._verified.popitem(last=False)
        if revoked:  # told only to a caller who holds the real secret
            raise AuthError("revoked", f"API key {key_id} was revoked")
        return Principal(key_id, tenant, tuple(json.loads(scopes)))


def scoped_session(principal: Principal, session_id: str) -> str:
    """The upstream id of the caller's ``session_id``: ``<tenant>:<session_id>``.

    Raises:
        GatewayError: 400 when the id is empty, too long, or has characters module
            services refuse.
    """
    scoped = f"{principal.tenant}{_TENANT_SEP}{session_id}"
    if not session_id or not _SESSION_RE.fullmatch(scoped):
        raise GatewayError(
            400,
            f"session ids are 1-{127 - len(principal.tenant)} of A-Z, a-z, 0-9, '_', '.',"
            f" ':', '-' (got {session_id[:80]!r})",
        )
    return scoped


def unscoped_session(principal: Principal, upstream_id: str) -> str:
    """The caller's view of an upstream session id; 404 if it is another tenant's.

    For ids coming back from upstreams (listings, replies): the gateway never shows a
    tenant an id outside its namespace.
    """
    prefix = principal.tenant + _TENANT_SEP
    if not upstream_id.startswith(prefix):
        raise GatewayError(404, "no such session")
    return upstream_id[len(prefix) :]
