"""Credential checks behind cheap defences, so a flood of bad credentials costs little.

An API key's check is a scrypt hash (about 40 ms of CPU); a JWT's a signature and maybe
a JWKS fetch. A gateway that does that work for whatever it is sent can be kept busy
by one client with random keys. So, in this order, every check:

1. a credential that failed in the last ``failure_seconds`` fails again at once, from a
   small bounded memory of failures (by SHA-256 of what was presented): no scrypt;
2. a credential verified before (the key store's and the JWT verifier's own memory)
   costs a hash: no token is spent, so legitimate clients are not slowed by (1)-(3);
3. any other check first takes a token from a bucket of the client's address and one
   of the id the credential claims (unverified: ``lak_<id>``, a JWT's ``sub``): 429
   with ``Retry-After`` when either is empty, before any costly work;
4. the check itself runs on the runtime's own pool (:func:`~llmagentos._blocking.run_blocking`),
   never on the event loop nor on the default executor that tools may fill.

The buckets are per process: they guard this process's CPU, not a shared quota.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from llmagentos._blocking import run_blocking
from llmagentos.exceptions import AuthError, ConfigError, RateLimited
from llmagentos.gateway.clock import Clock, monotonic
from llmagentos.gateway.jwt_auth import Credentials
from llmagentos.gateway.ratelimit import TokenBucket
from llmagentos.principal import Principal

__all__ = ["CredentialGuard"]

T = TypeVar("T")


class CredentialGuard:
    """:class:`Credentials` checked behind a failure memory and per-address/per-id buckets.

    Args:
        credentials: the API keys and/or JWT verifier.
        address_rate, address_burst: costly checks per second (and burst) per client address.
        key_rate, key_burst: costly checks per second (and burst) per claimed key id.
        failure_seconds: how long a failed credential is remembered.
        max_failures: how many failures are remembered at most (oldest forgotten first).
        clock: monotonic seconds (tests pass a manual clock).
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        address_rate: float = 10.0,
        address_burst: float = 20.0,
        key_rate: float = 2.0,
        key_burst: float = 5.0,
        failure_seconds: float = 10.0,
        max_failures: int = 10_000,
        clock: Clock = monotonic,
    ) -> None:
        if not failure_seconds >= 0 or math.isinf(failure_seconds):
            raise ConfigError("auth_failure_seconds", f"must be >= 0 (got {failure_seconds!r})")
        if max_failures < 1:
            raise ConfigError("auth_max_failures", f"must be >= 1 (got {max_failures!r})")
        self.credentials = credentials
        self._addresses = TokenBucket(address_rate, address_burst, clock=clock)
        self._keys = TokenBucket(key_rate, key_burst, clock=clock)
        self.failure_seconds = failure_seconds
        self.max_failures = max_failures
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[bytes, tuple[float, str, str]] = OrderedDict()
        #: checks by outcome: cached, costly, remembered (a failure repeated), throttled
        self.counts = {"cached": 0, "costly": 0, "remembered": 0, "throttled": 0}

    async def principal(self, presented: str | None, client: str) -> Principal:
        """The caller behind a service request's credential.

        Raises:
            AuthError: 401/403 (see :meth:`Credentials.authenticate`).
            RateLimited: 429, too many costly checks from this address or for this id.
        """
        return await self._check(self.credentials.authenticate, presented, client)

    async def admin(self, presented: str | None, client: str) -> str:
        """The id of the admin key behind an admin request's credential.

        Raises:
            AuthError: 401; 403 for anything but an admin key.
            RateLimited: 429, as :meth:`principal`.
        """
        return await self._check(self.credentials.authenticate_admin, presented, client)

    async def _check(
        self, check: Callable[[str | None], T], presented: str | None, client: str
    ) -> T:
        # By the credential itself, so "bearer  x" and "Bearer x" are one failure.
        value = (presented or "").strip()
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() == "bearer":
            value = rest.strip()
        digest = hashlib.sha256(value.encode()).digest()
        remembered = self._remembered(digest)
        if remembered is not None:
            self.counts["remembered"] += 1
            raise AuthError(*remembered)
        cached = self.credentials.is_cached(presented)
        if cached:
            self.counts["cached"] += 1
        else:
            self._spend(f"ip:{client}", self._addresses, "address " + client)
            self._spend(self.credentials.claimed_id(presented), self._keys, "this credential")
            self.counts["costly"] += 1
        try:
            if cached:
                # A hash and, for an API key, one indexed read of the key file (WAL: no
                # writer blocks it), still made so that a revocation counts at once: less
                # than handing it to a thread and back would cost.
                return check(presented)
            return await run_blocking(check, presented)
        except AuthError as err:
            if err.status == 401 and err.reason != "missing":
                self._remember(digest, err)
            raise

    def _spend(self, key: str, bucket: TokenBucket, who: str) -> None:
        decision = bucket.take_now(key)
        if not decision.allowed:
            self.counts["throttled"] += 1
            raise RateLimited(
                f"too many credential checks for {who}; retry in {decision.retry_after:.1f} s",
                decision.retry_after,
            )

    def _remembered(self, digest: bytes) -> tuple[str, str] | None:
        now = self._clock()
        with self._lock:
            entry = self._failures.get(digest)
            if entry is None:
                return None
            until, reason, message = entry
            if until <= now:
                del self._failures[digest]
                return None
            return reason, message

    def _remember(self, digest: bytes, err: AuthError) -> None:
        if self.failure_seconds == 0:
            return
        with self._lock:
            self._failures[digest] = (self._clock() + self.failure_seconds, err.reason, str(err))
            self._failures.move_to_end(digest)
            while len(self._failures) > self.max_failures:
                self._failures.popitem(last=False)

    def failures_remembered(self) -> int:
        """How many failed credentials are remembered now (bounded by ``max_failures``)."""
        with self._lock:
            return len(self._failures)
