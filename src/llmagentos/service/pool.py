"""The sessions of a module service: one agent per (tenant, session), within quotas.

:class:`SessionPool` keeps the agents in memory, keyed by :class:`SessionKey`, so a
tenant only ever names its own sessions. A session is never evicted while it is in
use (a call holds or awaits its lock). Quotas:

- ``max_sessions_per_tenant`` sessions in memory per tenant: a tenant at its quota
  that opens another session has its own least recently used idle session evicted
  (with a store), or is refused with HTTP 429 naming the quota (without one: an
  evicted session would lose what it learned). One tenant never evicts another's
  sessions to make room for its own quota.
- ``max_sessions`` in memory for all tenants: when full, the idle session of the
  tenant holding the most is evicted (with a store), else the call is refused (503).

With a :class:`~llmagentos.service.store.SessionStore`, every call's result is saved
before the reply, so an evicted session is already saved and comes back on its next
call as it was (Q-table, visits, environment mid-episode). Store I/O and decoding
run on the runtime's blocking pool (:func:`llmagentos._blocking.run_blocking`),
never on the event loop. The pool remembers the highest version of every session it
saw, so a store rolled back to an older (validly sealed) state is refused, even
after the session was evicted. A read is judged against the highest version seen
*before* it began, so a version a concurrent call saved meanwhile is no rollback.

Calls, deletions and reads of a resident session take the session's lock, so a read
never sees a call half applied, and a deletion is never overtaken by a call that
arrived after it. A call that fails on a session that did not exist yet leaves none
behind (nothing listed, nothing counted against a quota).

With a store, an ``Idempotency-Key`` is stored with the request it came with (a digest
of its method, target and body: :func:`~llmagentos.service.tenancy.request_fingerprint`):
the same request sent again gets the stored reply; another request with that key is
refused with a 422 naming the header, and nothing is applied.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llmagentos._blocking import run_blocking
from llmagentos._json import jsonable
from llmagentos.build import BuiltAgent
from llmagentos.exceptions import (
    ConfigError,
    SessionConflict,
    SessionLimitReached,
    SessionStateRefused,
)
from llmagentos.service.state import JSON_TAG, StateCodec
from llmagentos.service.store import SessionKey, SessionStore, StoredSession
from llmagentos.service.tenancy import request_fingerprint
from llmagentos.service.wire import idempotency_key_reused

__all__ = ["DEFAULT_MAX_SESSIONS_PER_TENANT", "Replayed", "Session", "SessionPool"]

T = TypeVar("T")
DEFAULT_MAX_SESSIONS_PER_TENANT = 256
_MARKS = 65536  # sessions whose highest version is remembered (oldest forgotten first)


@dataclass(slots=True, eq=False)
class Session:
    """A session's agent, its lock, and the version of it this replica holds."""

    built: BuiltAgent | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    version: int = 0  # -1: unknown (applied here but not stored): reload it next time
    users: int = 0  # calls holding or waiting for the lock: never evicted meanwhile
    dropped: bool = False

    @property
    def idle(self) -> bool:
        return self.users == 0 and not self.lock.locked()


@dataclass(frozen=True, slots=True)
class Replayed:
    """The stored reply of a call applied before (returned as it was)."""

    content: Any


@dataclass(slots=True)
class PoolStats:
    """What the pool did, for ``/metrics``."""

    evicted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # by the limit's name
    state_refused: Counter[str] = field(default_factory=Counter)  # by reason


class SessionPool:
    """One built agent per (tenant, session), with quotas; optionally backed by a store.

    Args:
        factory: builds a session's agent.
        max_sessions: sessions in memory, all tenants together.
        max_sessions_per_tenant: sessions in memory per tenant (default: 256, at most
            ``max_sessions``).
        store: keep sessions outside this replica (see the module docs).
        codec: how states are written to the store (default: a
            :class:`~llmagentos.service.state.StateCodec` of ``factory``).
    """

    def __init__(
        self,
        factory: Callable[[], BuiltAgent],
        *,
        max_sessions: int = 1024,
        max_sessions_per_tenant: int | None = None,
        store: SessionStore | None = None,
        codec: StateCodec | None = None,
    ) -> None:
        if max_sessions < 1:
            raise ConfigError("max_sessions", f"must be >= 1 (got {max_sessions})")
        per_tenant = max_sessions_per_tenant
        if per_tenant is None:
            per_tenant = min(DEFAULT_MAX_SESSIONS_PER_TENANT, max_sessions)
        if per_tenant < 1:
            raise ConfigError("max_sessions_per_tenant", f"must be >= 1 (got {per_tenant})")
        self.factory = factory
        self.max_sessions = max_sessions
        self.max_sessions_per_tenant = per_tenant
        self.store = store
        self.codec = codec
        if store is not None and codec is None:
            self.codec = StateCodec(factory, allow_pickle=store.signed)
        self.stats = PoolStats()
        self._sessions: OrderedDict[SessionKey, Session] = OrderedDict()
        self._per_tenant: Counter[str] = Counter()
        self._marks: OrderedDict[SessionKey, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def resident(self, tenant: str) -> int:
        """How many of ``tenant``'s sessions are in memory."""
        return self._per_tenant[tenant]

    # -- admission and eviction (all on the event loop, no awaits in between) --

    def _admit(self, key: SessionKey) -> Session:
        found = self._sessions.get(key)
        if found is not None:
            self._sessions.move_to_end(key)
            return found
        if self._per_tenant[key.tenant] >= self.max_sessions_per_tenant:
            self._make_room(key.tenant, "max_sessions_per_tenant", self.max_sessions_per_tenant)
        if len(self._sessions) >= self.max_sessions:
            self._make_room(None, "max_sessions", self.max_sessions)
        entry = Session()
        self._sessions[key] = entry
        self._per_tenant[key.tenant] += 1
        return entry

    def _make_room(self, tenant: str | None, limit: str, size: int) -> None:
        whose = "this tenant" if tenant is not None else "this service"
        if self.store is None:
            self.stats.refused[limit] += 1
            # Without a store an evicted session would lose what it learned: refuse.
            raise SessionLimitReached(
                limit, size,
                f"{whose} already holds {size} sessions ({limit}={size}); end one with "
                "DELETE /v1/sessions/{session}, or run the service with a --state-store "
                "so idle sessions are saved and evicted instead",
                status=429 if tenant is not None else 503,
            )  # fmt: skip
        victim = self._victim(tenant)
        if victim is None:
            self.stats.refused[limit] += 1
            raise SessionLimitReached(
                limit, size, f"{whose} holds {size} sessions ({limit}={size}), all in a call; "
                "try again",
                status=503,
            )  # fmt: skip
        self._evict(victim)

    def _victim(self, tenant: str | None) -> SessionKey | None:
        idle = [key for key, entry in self._sessions.items() if entry.idle]  # oldest first
        if tenant is not None:
            return next((key for key in idle if key.tenant == tenant), None)
        if not idle:
            return None
        # The tenant holding the most sessions gives one up first: a tenant flooding
        # the service pages out its own sessions, not everyone else's.
        most = max(self._per_tenant[key.tenant] for key in idle)
        return next(key for key in idle if self._per_tenant[key.tenant] == most)

    def _evict(self, key: SessionKey) -> None:
        # Saved already: every call's result is stored before its reply.
        entry = self._remove(key)
        self.stats.evicted += 1
        if entry is not None and entry.built is not None:
            entry.built.agent.close()

    def _remove(self, key: SessionKey) -> Session | None:
        entry = self._sessions.pop(key, None)
        if entry is not None:
            entry.dropped = True
            self._per_tenant[key.tenant] -= 1
            if not self._per_tenant[key.tenant]:
                del self._per_tenant[key.tenant]
        return entry

    # -- versions seen, against rollback --

    def _mark(self, key: SessionKey, version: int) -> None:
        seen = self._marks.pop(key, None)
        self._marks[key] = (max(version, seen[0] if seen else 0), time.time())
        while len(self._marks) > _MARKS:
            self._marks.popitem(last=False)

    def _check(
        self, key: SessionKey, stored: StoredSession | None, seen: tuple[int, float] | None
    ) -> None:
        # ``seen``: the mark as it was before the load began. A version marked since
        # was saved after the load read the row, so the row may rightly be older.
        if seen is None or self.store is None:
            return
        highest, when = seen
        ttl = self.store.ttl_seconds
        if ttl and time.time() - when > ttl:
            return  # the store may have expired the session since: not a rollback
        version = 0 if stored is None else stored.version
        if version < highest:
            self.stats.state_refused["rollback"] += 1
            raise SessionStateRefused(
                "rollback",
                f"the stored state of session {key.session!r} is at version {version}, older "
                f"than version {highest} this replica saw: it was rolled back or removed "
                "behind the service's back; refusing it (the store is left as it is)",
            )

    async def _load(self, key: SessionKey) -> StoredSession | None:
        assert self.store is not None
        seen = self._marks.get(key)  # before the read (see _check)
        try:
            stored = await run_blocking(self.store.load, key)
        except SessionStateRefused as err:
            self.stats.state_refused[err.reason] += 1
            raise
        self._check(key, stored, seen)
        if stored is not None:
            self._mark(key, stored.version)
        return stored

    async def _decode(self, stored: StoredSession) -> BuiltAgent:
        assert self.codec is not None
        assert stored.state is not None
        # The base a JSON state is applied to (a pickle needs none).
        fresh = self.factory() if stored.state[:1] == JSON_TAG else None
        try:
            return await run_blocking(self.codec.loads, stored.state, fresh)
        except SessionStateRefused as err:
            self.stats.state_refused[err.reason] += 1
            raise

    # -- calls --

    async def run(
        self,
        key: SessionKey,
        work: Callable[[BuiltAgent], Awaitable[T]],
        call_key: str | None,
        request: str | None = None,
    ) -> Any:
        """Apply ``work`` to the session's agent, once per idempotency ``call_key``.

        Calls of one session wait for each other; other sessions' calls run meanwhile.
        ``request`` is what the call is (default: the HTTP request being handled, see
        :func:`~llmagentos.service.tenancy.request_fingerprint`); a ``call_key`` stored
        with another request is refused.

        Raises:
            SessionLimitReached: a new session does not fit its quota.
            SessionStateRefused: the stored state is forged or rolled back.
            SessionConflict: another replica moved the session on meanwhile.
            RequestValidationError: ``call_key`` was used before for another request
                (a 422 naming ``Idempotency-Key``); nothing was applied.
        """
        if call_key is not None and request is None and self.store is not None:
            request = request_fingerprint()
        while True:
            entry = self._admit(key)
            entry.users += 1
            try:
                async with entry.lock:
                    if entry.dropped:
                        continue  # deleted while this call waited: start afresh
                    return await self._apply(key, entry, work, call_key, request)
            finally:
                self._release(key, entry)

    def _release(self, key: SessionKey, entry: Session) -> None:
        entry.users -= 1
        if entry.built is None and not entry.dropped and entry.idle:
            self._remove(key)  # nothing was built: do not hold the quota

    async def _apply(
        self,
        key: SessionKey,
        entry: Session,
        work: Callable[[BuiltAgent], Awaitable[T]],
        call_key: str | None,
        request: str | None,
    ) -> Any:
        store = self.store
        if store is None:
            new = entry.built is None
            if entry.built is None:
                entry.built = self.factory()
            try:
                return await work(entry.built)
            except BaseException:
                if new:  # a session that failed its first call was never there
                    self._discard(entry)
                raise
        stored = await self._load(key)
        new = stored is None or stored.deleted
        if stored is not None and not stored.deleted:
            last = stored.last_reply
            if call_key is not None and last and _replays(stored.last_key, call_key, request):
                return Replayed(json.loads(last))  # applied already
            if entry.built is None or stored.version != entry.version:
                entry.built = await self._decode(stored)  # another replica moved it on
                entry.version = stored.version
        else:
            base = 0 if stored is None else stored.version  # after a tombstone
            if entry.built is None or entry.version != base:
                if entry.built is not None:
                    entry.built.agent.close()
                entry.built = self.factory()
                entry.version = base
        built = entry.built
        assert self.codec is not None
        last_key = _stamp(call_key, request)
        try:
            result = await work(built)
            reply = json.dumps(jsonable(result))
            blob = await run_blocking(self.codec.dumps, built)
            version = entry.version + 1
            saved = await run_blocking(store.save, key, version, blob, last_key, reply)
        except BaseException:
            entry.version = -1  # applied here but not stored: reload it next time
            if new:
                self._discard(entry)  # nothing stored: no session was made
            raise
        if not saved:
            entry.version = -1
            raise SessionConflict(
                f"session {key.session!r} was changed by another replica meanwhile; "
                "the call was not applied"
            )
        entry.version = version
        self._mark(key, version)
        return result

    @staticmethod
    def _discard(entry: Session) -> None:
        if entry.built is not None:
            entry.built.agent.close()
            entry.built = None

    async def drop(self, key: SessionKey) -> bool:
        """Forget a session (after its running call); False if there was none.

        With a store, a sealed tombstone takes the next version, so the deletion
        reaches every replica and versions keep growing. It is written under the
        session's lock (taken in memory for a session that is not), and the session
        leaves memory only after it, so a call that arrives meanwhile waits and then
        starts on the deleted session instead of racing the deletion.
        """
        while True:
            entry = self._sessions.get(key)
            if entry is None:
                if self.store is None:
                    return False
                entry = self._admit(key)  # a lock for calls arriving meanwhile to wait on
            entry.users += 1
            try:
                async with entry.lock:
                    if entry.dropped:
                        continue  # evicted or deleted while this waited: look again
                    existed = entry.built is not None
                    if self.store is not None:
                        existed = await self._tombstone(key)
                    self._remove(key)
                    self._discard(entry)
                    return existed
            finally:
                self._release(key, entry)

    async def _tombstone(self, key: SessionKey) -> bool:
        assert self.store is not None
        for _ in range(8):  # another replica may save meanwhile: try again on its version
            stored = await self._load(key)
            if stored is None or stored.deleted:
                return False
            version = stored.version + 1
            if await run_blocking(self.store.save, key, version, None, None, None):
                self._mark(key, version)
                return True
        raise SessionConflict(f"session {key.session!r} kept changing; it was not deleted")

    async def peek(self, key: SessionKey) -> BuiltAgent | None:
        """The session's agent as last stored (or held here), or None; changes nothing.

        A resident session is read under its lock: never with a call half applied.
        """
        while True:
            entry = self._sessions.get(key)
            if entry is None:
                return None if self.store is None else await self._stored_agent(key, None)
            entry.users += 1
            try:
                async with entry.lock:
                    if entry.dropped:
                        continue  # evicted or deleted while this waited: look again
                    if self.store is None:
                        return entry.built
                    return await self._stored_agent(key, entry)
            finally:
                self._release(key, entry)

    async def _stored_agent(self, key: SessionKey, entry: Session | None) -> BuiltAgent | None:
        stored = await self._load(key)
        if stored is None or stored.deleted:
            return None
        if entry is not None and entry.built is not None and entry.version == stored.version:
            return entry.built
        return await self._decode(stored)

    async def sessions(self, tenant: str, limit: int) -> tuple[list[str], bool]:
        """``tenant``'s session ids (sorted, at most ``limit``) and whether more exist."""
        names = {
            key.session
            for key, entry in self._sessions.items()
            if key.tenant == tenant and entry.built is not None and self.store is None
        }
        if self.store is not None:
            names.update(await run_blocking(self.store.sessions, tenant, limit + 1))
        ordered = sorted(names)
        return ordered[:limit], len(ordered) > limit


def _stamp(call_key: str | None, request: str | None) -> str | None:
    """The key as stored: ``"<request fingerprint>\\n<key>"`` (a header value holds
    no newline, so this splits one way only), or the key alone without a request."""
    if call_key is None or request is None:
        return call_key
    return f"{request}\n{call_key}"


def _replays(stored: str | None, call_key: str, request: str | None) -> bool:
    """Whether a call with ``call_key`` is the stored one sent again (its reply is then
    returned as it was).

    Raises:
        RequestValidationError: the key was stored with another request (a 422).
    """
    if stored is None:
        return False
    earlier, newline, key = stored.partition("\n")
    if not newline or not _fingerprinted(earlier):
        return stored == call_key  # stored without a request: the key alone
    if key != call_key:
        return False
    if request is None or request == earlier:
        return True
    raise idempotency_key_reused(call_key, earlier.partition(" ")[2], request.partition(" ")[2])


def _fingerprinted(text: str) -> bool:
    digest, space, _ = text.partition(" ")
    return bool(space) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
