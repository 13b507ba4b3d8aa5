"""API keys with scopes, stored hashed; admin keys apart.

A key reads ``lak_<id>_<secret>``: the id finds the one stored record to check, so a
lookup never scans every key; the secret is stored only as a salted scrypt hash and
compared in constant time. The plaintext is returned once, by :meth:`ApiKeyStore.create_key`.

Each service key belongs to one tenant and carries scopes ``service:route`` (shell-style
patterns: ``planner:*``, ``*:read``, ``*:*``). The gateway asks ``principal.can(service,
route)``; a missing, malformed, unknown or revoked key is a 401, a valid key without
the scope a 403.

An admin key (``create_key(admin=True)``, ``llmagentos keys create --admin``) has no
tenant and no scopes: it opens the gateway's admin routes (the registry) and nothing
else, and no service key opens them, ``*:*`` included.

Tenancy is not the gateway's to rewrite: it signs the caller's principal for the
service (:mod:`llmagentos.principal`), which namespaces its sessions by tenant itself.
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

from llmagentos._sqlite import use_wal
from llmagentos.exceptions import AuthError, ConfigError
from llmagentos.principal import Principal

__all__ = ["ApiKeyInfo", "ApiKeyStore", "Principal", "key_id_of"]

KEY_PREFIX = "lak"
_KEY_RE = re.compile(r"^lak_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_SCOPE_PART_RE = re.compile(r"^[A-Za-z0-9_.*/?\[\]-]{1,128}$")

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
    admin: bool = False


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
            use_wal(self._db)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " scopes TEXT NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL,"
            " n INTEGER NOT NULL, created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,"
            " admin INTEGER NOT NULL DEFAULT 0)"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(api_keys)")}
        if "admin" not in columns:  # a key file made before admin keys existed
            self._db.execute("ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0")
        # digest of a presented key -> key id, for keys whose scrypt check passed: a
        # repeat request costs one SHA-256 instead of one scrypt. Memory only.
        self._verified: OrderedDict[bytes, str] = OrderedDict()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create_key(
        self, tenant: str | None, scopes: Iterable[str] = (), *, admin: bool = False
    ) -> str:
        """Make a key and return its plaintext: the only time it is ever available.

        A service key needs a tenant and at least one scope; an admin key has neither.
        """
        scope_list = [check_scope(s) for s in scopes]
        if admin:
            if tenant or scope_list:
                raise ConfigError("admin", "an admin key has no tenant and no scopes")
            tenant = ""
        else:
            check_tenant(tenant or "")
            if not scope_list:
                raise ConfigError("scopes", "a key needs at least one scope")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        digest = _hash(secret, salt, self.scrypt_n)
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (key_id, tenant, scopes, salt, hash, n, created, admin)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id, tenant, json.dumps(scope_list), salt, digest, self.scrypt_n,
                    time.time(), int(admin),
                ),
            )  # fmt: skip
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such key."""
        with self._lock:
            cursor = self._db.execute("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", (key_id,))
            return cursor.rowcount > 0

    def list_keys(self, tenant: str | None = None) -> list[ApiKeyInfo]:
        """The stored keys (all, or one tenant's), oldest first."""
        query = "SELECT key_id, tenant, scopes, created, revoked, admin FROM api_keys"
        args: tuple[str, ...] = ()
        if tenant is not None:
            query, args = query + " WHERE tenant = ?", (tenant,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created", args).fetchall()
        return [
            ApiKeyInfo(r[0], r[1], tuple(json.loads(r[2])), r[3], bool(r[4]), bool(r[5]))
            for r in rows
        ]

    def is_cached(self, header_value: str | None) -> bool:
        """Would checking this key cost only a hash (its scrypt check passed before)?"""
        value = _bare(header_value)
        match = _KEY_RE.fullmatch(value) if value else None
        if match is None:
            return True  # refused before any scrypt: cheap too
        digest = hashlib.sha256(value.encode()).digest()
        with self._lock:
            return self._verified.get(digest) == match.group(1)

    def _check(self, header_value: str | None) -> tuple[str, str, str, bool]:
        """``(key_id, tenant, scopes JSON, admin)`` of a valid, unrevoked key."""
        value = _bare(header_value)
        if not value:
            raise AuthError("missing", "no API key: send 'Authorization: Bearer lak_...'")
        match = _KEY_RE.fullmatch(value)
        if match is None:
            raise AuthError("malformed", "the API key is not of the form lak_<id>_<secret>")
        key_id, secret = match.groups()
        with self._lock:
            row = self._db.execute(
                "SELECT tenant, scopes, salt, hash, n, revoked, admin FROM api_keys"
                " WHERE key_id = ?",
                (key_id,),
            ).fetchone()
        if row is None:
            raise AuthError("unknown", "unknown API key")
        tenant, scopes, salt, stored, n, revoked, admin = row
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
        return key_id, tenant, scopes, bool(admin)

    def authenticate(self, header_value: str | None) -> Principal:
        """The caller behind ``Authorization: Bearer <key>`` (or a bare key, as in ``X-API-Key``).

        Raises:
            AuthError: 401 with reason ``missing``, ``malformed``, ``unknown`` (no such
                key, or a wrong secret) or ``revoked``; 403 for an admin key.
        """
        key_id, tenant, scopes, admin = self._check(header_value)
        if admin:
            raise AuthError(
                "forbidden", f"key {key_id} is an admin key: it opens only the admin routes"
            )
        return Principal(key_id, tenant, tuple(json.loads(scopes)))

    def authenticate_admin(self, header_value: str | None) -> str:
        """The id of the admin key behind the header.

        Raises:
            AuthError: 401 as :meth:`authenticate`; 403 for a service key, whatever its
                scopes (``*:*`` included).
        """
        key_id, _, _, admin = self._check(header_value)
        if not admin:
            raise AuthError(
                "forbidden",
                f"key {key_id} is not an admin key: the admin routes take only admin keys "
                "(llmagentos keys create --admin), whatever a service key's scopes",
            )
        return key_id


def _bare(header_value: str | None) -> str:
    """The key in ``Bearer <key>`` (or a bare key), stripped."""
    value = (header_value or "").strip()
    scheme, _, rest = value.partition(" ")
    if rest and scheme.lower() == "bearer":
        value = rest.strip()
    return value


def key_id_of(header_value: str | None) -> str | None:
    """The id a presented API key claims (unverified: for rate limits only), or ``None``."""
    match = _KEY_RE.fullmatch(_bare(header_value))
    return match.group(1) if match else None
