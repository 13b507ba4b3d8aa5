"""Session state kept outside a replica, so another replica can take a session over.

With a store, a module service saves each session's agent (pickled) after every call,
together with the call's idempotency key and reply, in one atomic write. A replica
that gets a session whose stored version is newer than its own loads it first; a call
whose key matches the last one applied is answered from the stored reply instead of
being applied again. So when a replica dies mid-call and the gateway sends the call
to another replica, the step is applied exactly once: never lost (the other replica
has the state as of the last completed call) and never doubled (a call the dead
replica completed is recognised by its key).

Two stores, one contract (:class:`SessionStore`):

- :class:`SqliteSessionStore`: one SQLite file (WAL) shared by the replicas of one
  machine;
- :class:`RedisSessionStore`: a Redis server shared by replicas on several machines
  (extra ``gateway``: the ``redis`` client), each save a compare-and-set in a Lua
  script.

A stored agent is a pickle, and loading a pickle runs code: the store must be as
trusted as the service itself. With ``secret`` (``--state-secret`` or
``LLMAGENTOS_STATE_SECRET``) every blob is signed (HMAC-SHA256) and a blob whose
signature does not match is refused, so write access to the store alone is not
enough to run code in the replicas. Every replica of a service must be built from
the same config.
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
from typing import Any, Protocol

from llmagentos.exceptions import (
    ConfigError,
    MissingExtraError,
    SessionStoreError,
    SessionStoreUnavailable,
)

__all__ = [
    "RedisSessionStore",
    "SessionStore",
    "SqliteSessionStore",
    "StoredSession",
    "open_session_store",
]

_SCHEMA = """
create table if not exists sessions (
    session text primary key, version integer not null, state blob not null,
    last_key text, last_reply text, updated real not null
);
"""
_SIGNATURE_BYTES = 32


@dataclass(frozen=True, slots=True)
class StoredSession:
    version: int
    state: bytes
    last_key: str | None
    last_reply: str | None


class SessionStore(Protocol):
    """Sessions' pickled agents by session id, with the last applied call."""

    def load(self, session: str) -> StoredSession | None:
        """The stored session, or ``None``."""
        ...

    def save(
        self, session: str, version: int, state: bytes, key: str | None, reply: str | None
    ) -> bool:
        """Store version ``version`` if the stored one is ``version - 1``; else False."""
        ...

    def drop(self, session: str) -> None:
        """Forget the session."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class _Signer:
    """HMAC-SHA256 over each state blob when a secret is set; the identity otherwise."""

    def __init__(self, secret: str | bytes | None) -> None:
        self._key = secret.encode() if isinstance(secret, str) else secret

    def sign(self, state: bytes) -> bytes:
        if not self._key:
            return state
        return hmac.digest(self._key, state, hashlib.sha256) + state

    def verify(self, session: str, blob: bytes) -> bytes:
        if not self._key:
            return blob
        mark, state = blob[:_SIGNATURE_BYTES], blob[_SIGNATURE_BYTES:]
        if not hmac.compare_digest(mark, hmac.digest(self._key, state, hashlib.sha256)):
            raise SessionStoreError(
                f"the stored state of session {session!r} is not signed with this "
                "service's state secret; refusing to load it",
            )
        return state


class SqliteSessionStore:
    """The store in one SQLite file, for replicas on one machine."""

    def __init__(self, path: str | Path, *, secret: str | bytes | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._signer = _Signer(secret)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")
        self._db.execute("pragma busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def load(self, session: str) -> StoredSession | None:
        with self._lock, self._unavailable():
            row = self._db.execute(
                "select version, state, last_key, last_reply from sessions where session = ?",
                (session,),
            ).fetchone()
        if row is None:
            return None
        state = self._signer.verify(session, bytes(row[1]))
        return StoredSession(int(row[0]), state, row[2], row[3])

    def save(
        self, session: str, version: int, state: bytes, key: str | None, reply: str | None
    ) -> bool:
        blob = self._signer.sign(state)
        with self._lock, self._unavailable():
            if version == 1:
                cursor = self._db.execute(
                    "insert or ignore into sessions values (?, 1, ?, ?, ?, ?)",
                    (session, blob, key, reply, time.time()),
                )
            else:
                cursor = self._db.execute(
                    "update sessions set version = ?, state = ?, last_key = ?, last_reply = ?, "
                    "updated = ? where session = ? and version = ?",
                    (version, blob, key, reply, time.time(), session, version - 1),
                )
            return cursor.rowcount == 1

    def drop(self, session: str) -> None:
        with self._lock, self._unavailable():
            self._db.execute("delete from sessions where session = ?", (session,))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as err:  # locked past the busy timeout, disk full
            raise SessionStoreUnavailable(f"session store {self.path}: {err}") from err


# Compare-and-set in one step on the server: version 1 only if absent, version n only
# over n - 1. Fields: v (version), s (state), k (last key), r (last reply), t (time).
_SAVE = """
local stored = redis.call('HGET', KEYS[1], 'v')
local wanted = tonumber(ARGV[1])
if (stored == false and wanted == 1) or (stored ~= false and tonumber(stored) == wanted - 1) then
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 's', ARGV[2], 'k', ARGV[3], 'r', ARGV[4], 't', ARGV[5])
  if tonumber(ARGV[6]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[6]) end
  return 1
end
return 0
"""


class RedisSessionStore:
    """The store in Redis, for replicas on several machines.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``).
        namespace: key prefix, so several services share one Redis.
        secret: sign and verify every state blob (see the module docs).
        ttl_seconds: forget a session this long after its last call (0: never).
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "llmagentos:sessions",
        secret: str | bytes | None = None,
        ttl_seconds: int = 0,
    ) -> None:
        try:
            import redis
        except ImportError as err:
            raise MissingExtraError("a Redis session store", "gateway", "redis") from err
        if ttl_seconds < 0:
            raise ConfigError("ttl_seconds", f"must be >= 0 (got {ttl_seconds})")
        self._client: Any = redis.Redis.from_url(url, socket_timeout=5.0)
        try:
            self._client.ping()
        except redis.RedisError as err:
            raise ConfigError("state_store", f"cannot reach Redis at {url}: {err}") from err
        self._save = self._client.register_script(_SAVE)
        self._errors: type[Exception] = redis.RedisError
        self._url = url
        self._prefix = namespace + ":"
        self._signer = _Signer(secret)
        self.ttl_seconds = ttl_seconds

    def load(self, session: str) -> StoredSession | None:
        with self._unavailable():
            fields = self._client.hmget(self._prefix + session, "v", "s", "k", "r")
        version, blob, key, reply = fields
        if version is None:
            return None
        return StoredSession(
            int(version),
            self._signer.verify(session, bytes(blob)),
            None if not key else key.decode(),
            None if not reply else reply.decode(),
        )

    def save(
        self, session: str, version: int, state: bytes, key: str | None, reply: str | None
    ) -> bool:
        args: list[bytes | str | int | float] = [
            version, self._signer.sign(state), key or "", reply or "", time.time(), self.ttl_seconds
        ]  # fmt: skip
        with self._unavailable():
            done = self._save(keys=[self._prefix + session], args=args)
        return bool(done)

    def drop(self, session: str) -> None:
        with self._unavailable():
            self._client.delete(self._prefix + session)

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except self._errors as err:
            raise SessionStoreUnavailable(f"session store {self._url}: {err}") from err


def open_session_store(
    spec: str | Path, *, secret: str | bytes | None = None, namespace: str | None = None
) -> SessionStore:
    """A Redis store for a ``redis://`` or ``rediss://`` URL, else a SQLite file.

    Raises:
        ConfigError: Redis cannot be reached.
        MissingExtraError: the ``redis`` client is not installed.
    """
    text = str(spec)
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisSessionStore(text, secret=secret, namespace=namespace or "llmagentos:sessions")
    return SqliteSessionStore(spec, secret=secret)
