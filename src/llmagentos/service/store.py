"""Session state kept outside a replica, so another replica can take a session over.

With a store, a module service saves each session's agent after every call, together
with the call's idempotency key and reply, in one atomic compare-and-set on the
session's version. A replica that gets a session whose stored version is newer than
its own loads it first; a call whose key matches the last one applied is answered
from the stored reply instead of being applied again (the key is stored with a digest
of its request, so the same key on another request is refused, not answered with
another call's reply: see :mod:`llmagentos.service.pool`). So when a replica dies mid-call
and the gateway sends the call to another replica, the step is applied exactly once.

Sessions are keyed by :class:`SessionKey` (tenant, session id) under the store's
``namespace`` (one per service): the tenant comes from the caller's verified
principal, never from anything the client wrote, so no id reaches another tenant's
row.

Two stores, one contract (:class:`SessionStore`):

- :class:`SqliteSessionStore`: one SQLite file (WAL) shared by the replicas of one
  machine;
- :class:`RedisSessionStore`: a Redis server shared by replicas on several machines
  (the ``redis`` client), each save a compare-and-set in a Lua script.

Every row is sealed with HMAC-SHA256 under the state secret (``--state-secret`` or
``LLMAGENTOS_STATE_SECRET``) over the namespace, tenant, session id, version, state
and last call: a sealed state copied into another session's row, another service's
namespace or another version is refused (:class:`SessionStateRefused`, reason
``forged``). A store that others can write (a file, a Redis) without a secret is
refused unless the operator opts in (``allow_unsigned``). Deleting a session writes
a sealed tombstone at the next version, so versions only grow and a replica can tell
a rollback from a deletion (see :mod:`llmagentos.service.pool`).
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from llmagentos._secrets import secret_bytes
from llmagentos._sqlite import use_wal
from llmagentos.exceptions import (
    ConfigError,
    MissingExtraError,
    SessionStateRefused,
    SessionStoreUnavailable,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "RedisSessionStore",
    "SessionKey",
    "SessionStore",
    "SqliteSessionStore",
    "StoredSession",
    "open_session_store",
    "state_secret",
]

DEFAULT_NAMESPACE = "llmagentos:sessions"
_SEAL_VERSION = b"llmagentos-session-state/2"

_SCHEMA = """
create table if not exists session_state (
    namespace text not null, tenant text not null, session text not null,
    version integer not null, state blob, seal blob not null,
    last_key text, last_reply text, updated real not null,
    primary key (namespace, tenant, session)
) without rowid;
"""


class SessionKey(NamedTuple):
    """A session as the service knows it: the caller's tenant and the session id.

    A tuple, not a joined string, so no id can be crafted to land in another tenant's
    namespace (``""`` is the anonymous tenant, never a real tenant's name).
    """

    tenant: str
    session: str


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A stored row: ``state`` is ``None`` for a tombstone (deleted at ``version``)."""

    version: int
    state: bytes | None
    last_key: str | None
    last_reply: str | None

    @property
    def deleted(self) -> bool:
        return self.state is None


class SessionStore(Protocol):
    """Sessions' states by :class:`SessionKey`, with the last applied call."""

    namespace: str
    signed: bool
    ttl_seconds: int

    def load(self, key: SessionKey) -> StoredSession | None:
        """The stored row, or ``None``.

        Raises:
            SessionStateRefused: the row is not sealed for this key and version.
            SessionStoreUnavailable: the store did not answer.
        """
        ...

    def save(
        self,
        key: SessionKey,
        version: int,
        state: bytes | None,
        last_key: str | None,
        reply: str | None,
    ) -> bool:
        """Store ``version`` if the stored one is ``version - 1`` (absent counts as 0);
        else False. ``state=None`` writes a tombstone."""
        ...

    def sessions(self, tenant: str, limit: int) -> list[str]:
        """The ids of ``tenant``'s live stored sessions, sorted, at most ``limit``."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def state_secret(secret: str | bytes | None) -> bytes | None:
    """The state secret as bytes (``None`` when not set).

    Raises:
        ConfigError: shorter than 16 bytes.
    """
    return secret_bytes(secret, field="state_secret")


def _refuse_unsigned(where: str, allow_unsigned: bool) -> None:
    if not allow_unsigned:
        raise ConfigError(
            "state_secret",
            f"the session store {where} can be written by others: give a state secret "
            "(--state-secret or LLMAGENTOS_STATE_SECRET) so its rows are sealed, or opt in "
            "to unsealed state with --insecure-unsigned-state",
        )


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


class _Seal:
    """HMAC-SHA256 over everything a row means; nothing when the store is unsigned."""

    def __init__(self, secret: bytes | None, namespace: str) -> None:
        self._key = secret
        self._namespace = namespace.encode()

    @property
    def signed(self) -> bool:
        return self._key is not None

    def mark(
        self, key: SessionKey, version: int, state: bytes | None, last_key: str | None,
        reply: str | None,
    ) -> bytes:  # fmt: skip
        if self._key is None:
            return b""
        message = b"".join((
            _SEAL_VERSION, _field(self._namespace), _field(key.tenant.encode()),
            _field(key.session.encode()), _field(str(version).encode()),
            _field(b"-" if state is None else b"+" + state),
            _field((last_key or "").encode()), _field((reply or "").encode()),
        ))  # fmt: skip
        return hmac.digest(self._key, message, hashlib.sha256)

    def check(self, key: SessionKey, row: StoredSession, seal: bytes) -> StoredSession:
        if self._key is None:
            return row
        expected = self.mark(key, row.version, row.state, row.last_key, row.last_reply)
        if not hmac.compare_digest(seal, expected):
            raise SessionStateRefused(
                "forged",
                f"the stored state of session {key.session!r} is not sealed for this "
                f"service, tenant, session and version {row.version}; refusing to load it",
            )
        return row


class SqliteSessionStore:
    """The store in one SQLite file, for replicas on one machine.

    Args:
        path: the database file (``":memory:"``: private to this process).
        namespace: the service's namespace within the file.
        secret: the state secret that seals every row.
        allow_unsigned: accept a file without a secret (insecure; opt in explicitly).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        secret: str | bytes | None = None,
        allow_unsigned: bool = False,
    ) -> None:
        key = state_secret(secret)
        private = str(path) == ":memory:"
        if key is None and not private:
            _refuse_unsigned(str(path), allow_unsigned)
        self.path = Path(path)
        if not private:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.ttl_seconds = 0
        self._seal = _Seal(key, namespace)
        self.signed = self._seal.signed
        target = ":memory:" if private else str(self.path)
        self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        use_wal(self._db)
        self._db.execute("pragma synchronous=normal")
        self._db.execute("pragma busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def load(self, key: SessionKey) -> StoredSession | None:
        with self._lock, self._unavailable():
            row = self._db.execute(
                "select version, state, seal, last_key, last_reply from session_state "
                "where namespace = ? and tenant = ? and session = ?",
                (self.namespace, key.tenant, key.session),
            ).fetchone()
        if row is None:
            return None
        state = None if row[1] is None else bytes(row[1])
        stored = StoredSession(int(row[0]), state, row[3] or None, row[4] or None)
        return self._seal.check(key, stored, bytes(row[2]))

    def save(
        self,
        key: SessionKey,
        version: int,
        state: bytes | None,
        last_key: str | None,
        reply: str | None,
    ) -> bool:
        seal = self._seal.mark(key, version, state, last_key, reply)
        row = (version, state, seal, last_key, reply, time.time())
        where = (self.namespace, key.tenant, key.session)
        with self._lock, self._unavailable():
            if version == 1:
                cursor = self._db.execute(
                    "insert or ignore into session_state (namespace, tenant, session, "
                    "version, state, seal, last_key, last_reply, updated) "
                    "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*where, *row),
                )
            else:
                cursor = self._db.execute(
                    "update session_state set version = ?, state = ?, seal = ?, last_key = ?, "
                    "last_reply = ?, updated = ? where namespace = ? and tenant = ? and "
                    "session = ? and version = ?",
                    (*row, *where, version - 1),
                )
            return cursor.rowcount == 1

    def sessions(self, tenant: str, limit: int) -> list[str]:
        with self._lock, self._unavailable():
            rows = self._db.execute(
                "select session from session_state where namespace = ? and tenant = ? and "
                "state is not null order by session limit ?",
                (self.namespace, tenant, limit),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as err:  # locked past the busy timeout, disk full
            raise SessionStoreUnavailable(f"session store {self.path}: {err}") from err


# Compare-and-set in one step on the server: version n only over n - 1 (absent: 0).
# Fields: v (version), s (state), d (1: a tombstone), m (seal), k (last key),
# r (last reply), t (time).
_SAVE = """
local stored = redis.call('HGET', KEYS[1], 'v')
local wanted = tonumber(ARGV[1])
local current = 0
if stored then current = tonumber(stored) end
if current ~= wanted - 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 's', ARGV[2], 'd', ARGV[3], 'm', ARGV[4],
           'k', ARGV[5], 'r', ARGV[6], 't', ARGV[7])
if tonumber(ARGV[8]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[8]) end
return 1
"""
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


class RedisSessionStore:
    """The store in Redis, for replicas on several machines.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        namespace: key prefix, so several services share one Redis.
        secret: the state secret that seals every row.
        ttl_seconds: forget a session this long after its last call (0: never).
        allow_unsigned: accept no secret (insecure; opt in explicitly).
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        secret: str | bytes | None = None,
        ttl_seconds: int = 0,
        allow_unsigned: bool = False,
    ) -> None:
        try:
            import redis
        except ImportError as err:
            raise MissingExtraError("a Redis session store", "gateway", "redis") from err
        if ttl_seconds < 0:
            raise ConfigError("ttl_seconds", f"must be >= 0 (got {ttl_seconds})")
        key = state_secret(secret)
        if key is None:
            _refuse_unsigned("in Redis", allow_unsigned)
        self._client: Any = redis.Redis.from_url(url, socket_timeout=5.0)
        try:
            self._client.ping()
        except redis.RedisError as err:
            raise ConfigError("state_store", f"cannot reach Redis at {url}: {err}") from err
        self._save = self._client.register_script(_SAVE)
        self._errors: type[Exception] = redis.RedisError
        self._url = url
        self.namespace = namespace
        self._prefix = namespace + ":"
        self._seal = _Seal(key, namespace)
        self.signed = self._seal.signed
        self.ttl_seconds = ttl_seconds

    def _key(self, key: SessionKey) -> str:
        # Neither a tenant nor a session id can hold '/', so this is one-to-one.
        return f"{self._prefix}{key.tenant}/{key.session}"

    def load(self, key: SessionKey) -> StoredSession | None:
        with self._unavailable():
            fields = self._client.hmget(self._key(key), "v", "s", "d", "m", "k", "r")
        version, blob, deleted, seal, last_key, reply = fields
        if version is None:
            return None
        stored = StoredSession(
            int(version),
            None if deleted == b"1" else bytes(blob or b""),
            last_key.decode() if last_key else None,
            reply.decode() if reply else None,
        )
        return self._seal.check(key, stored, bytes(seal or b""))

    def save(
        self,
        key: SessionKey,
        version: int,
        state: bytes | None,
        last_key: str | None,
        reply: str | None,
    ) -> bool:
        seal = self._seal.mark(key, version, state, last_key, reply)
        args: list[bytes | str | int | float] = [
            version, state or b"", "1" if state is None else "0", seal, last_key or "",
            reply or "", time.time(), self.ttl_seconds,
        ]  # fmt: skip
        with self._unavailable():
            done = self._save(keys=[self._key(key)], args=args)
        return bool(done)

    def sessions(self, tenant: str, limit: int) -> list[str]:
        start = f"{self._prefix}{tenant}/"
        with self._unavailable():
            names = [
                name.decode()
                for name in self._client.scan_iter(
                    match=start.translate(_GLOB_SPECIAL) + "*", count=500
                )
            ]
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.hget(name, "d")
            flags = pipe.execute() if names else []
        pairs = zip(names, flags, strict=True)
        alive = sorted(name[len(start) :] for name, flag in pairs if flag != b"1")
        return alive[:limit]

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except self._errors as err:
            raise SessionStoreUnavailable(f"session store {self._url}: {err}") from err


def open_session_store(
    spec: str | Path,
    *,
    secret: str | bytes | None = None,
    namespace: str | None = None,
    allow_unsigned: bool = False,
) -> SessionStore:
    """A Redis store for a ``redis://``, ``rediss://`` or ``unix://`` URL, else a SQLite
    file, under ``namespace`` (one per service).

    Raises:
        ConfigError: no secret and ``allow_unsigned`` not given, a short secret, or
            Redis cannot be reached.
        MissingExtraError: the ``redis`` client is not installed.
    """
    text = str(spec)
    space = namespace or DEFAULT_NAMESPACE
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisSessionStore(
            text, secret=secret, namespace=space, allow_unsigned=allow_unsigned
        )
    return SqliteSessionStore(spec, secret=secret, namespace=space, allow_unsigned=allow_unsigned)
