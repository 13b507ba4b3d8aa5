"""Per-key token-bucket rate limits, in process or shared through Redis.

A token bucket holds up to ``burst`` tokens and gains ``rate_per_second`` of them per
second; a call spends ``cost`` tokens or is refused with the time until enough tokens
will be there (the ``Retry-After`` of a 429). It allows bursts up to ``burst`` while
keeping the long-run rate at ``rate_per_second``.

:class:`TokenBucket` keeps the buckets in this process. :class:`RedisTokenBucket` keeps
them in Redis, updated by one Lua script that reads the time from the Redis server, so
every gateway replica spends from the same buckets on the same clock. Both have the
same ``async take(key, cost)``.

A Redis that does not answer (down, unreachable, slower than ``timeout``) raises
:class:`~llmagentos.exceptions.RateLimitUnavailable`, never anything else, and is not
asked again for ``retry_seconds``: the gateway then lets the request through or answers
503 with ``Retry-After``, as configured (``[gateway] rate_limit_failure``).
"""

from __future__ import annotations

import hashlib
import math
import threading
from typing import Any, NamedTuple, Protocol

from llmagentos.exceptions import ConfigError, MissingExtraError, RateLimitUnavailable
from llmagentos.gateway.clock import Clock, monotonic

__all__ = ["RateDecision", "RateLimiter", "RedisTokenBucket", "TokenBucket"]


class RateDecision(NamedTuple):
    """``(allowed, retry_after)``: retry_after is 0 when allowed, else seconds to wait."""

    allowed: bool
    retry_after: float


class RateLimiter(Protocol):
    """What the gateway needs from a limiter."""

    async def take(self, key: str, cost: float = 1.0) -> RateDecision: ...


def _check(rate_per_second: float, burst: float) -> None:
    if not rate_per_second > 0 or math.isinf(rate_per_second):
        raise ConfigError("rate_per_second", f"must be positive, got {rate_per_second}")
    if not burst >= 1 or math.isinf(burst):
        raise ConfigError("burst", f"must be at least 1, got {burst}")


def _check_cost(cost: float, burst: float) -> None:
    # A cost above the burst could never be paid: refusing forever would hide the bug.
    if not 0 < cost <= burst:
        raise ConfigError("cost", f"must be in (0, burst={burst:g}], got {cost:g}")


class TokenBucket:
    """Token buckets by key, in this process (thread-safe, refilled when read).

    Buckets that would be full again are dropped once more than ``max_keys`` exist,
    so memory follows the number of recently active keys.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: float,
        *,
        clock: Clock = monotonic,
        max_keys: int = 100_000,
    ) -> None:
        _check(rate_per_second, burst)
        self.rate = float(rate_per_second)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take_now(self, key: str, cost: float = 1.0) -> RateDecision:
        """Spend ``cost`` tokens from ``key``'s bucket if it has them (synchronous)."""
        _check_cost(cost, self.burst)
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                decision = RateDecision(True, 0.0)
            else:
                self._buckets[key] = (tokens, now)
                decision = RateDecision(False, (cost - tokens) / self.rate)
            if len(self._buckets) > self.max_keys:
                self._sweep(now)
        return decision

    async def take(self, key: str, cost: float = 1.0) -> RateDecision:
        return self.take_now(key, cost)

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate  # an untouched bucket is full after this
        for key in [k for k, (_, at) in self._buckets.items() if now - at >= full_after]:
            del self._buckets[key]


# KEYS[1] the bucket; ARGV rate, burst, cost. Returns {allowed (0/1), retry_after}.
# The time comes from the Redis server, so gateway replicas with skewed clocks agree;
# Redis >= 5 replicates a script's effects, which makes TIME safe before writes.
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'at', string.format('%.6f', now))
-- a bucket left alone this long is full again, which is what a missing key means
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil(burst / rate * 1000) + 1000))
return {allowed, string.format('%.6f', retry)}
"""
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


class RedisTokenBucket:
    """Token buckets by key in Redis, shared by every gateway replica using the same server.

    Args:
        redis: a ``redis.asyncio.Redis`` client, or a URL (``redis://127.0.0.1:6379/0``).
        rate_per_second, burst: the bucket, as in :class:`TokenBucket`.
        prefix: the Redis key prefix; different limits need different prefixes.
        timeout: seconds to connect to Redis and to get each answer (a URL's client).
        retry_seconds: after a failure, how long Redis is not asked again.
        clock: monotonic seconds (tests pass a manual clock).
    """

    def __init__(
        self,
        redis: Any,
        rate_per_second: float,
        burst: float,
        *,
        prefix: str = "llmagentos:ratelimit:",
        timeout: float = 0.5,
        retry_seconds: float = 1.0,
        clock: Clock = monotonic,
    ) -> None:
        _check(rate_per_second, burst)
        if not timeout > 0 or not retry_seconds >= 0:
            detail = f"timeout > 0 and retry_seconds >= 0 (got {timeout}, {retry_seconds})"
            raise ConfigError("redis_timeout", detail)
        try:
            import redis.asyncio as aioredis
            import redis.exceptions as redis_errors
        except ImportError as err:
            raise MissingExtraError("shared rate limits", "gateway", "redis") from err
        self._no_script = redis_errors.NoScriptError
        self._failures: tuple[type[BaseException], ...] = (
            redis_errors.RedisError, OSError, TimeoutError,
        )  # fmt: skip
        self._own_client = isinstance(redis, str)
        self._client: Any = (
            aioredis.from_url(redis, socket_connect_timeout=timeout, socket_timeout=timeout)
            if isinstance(redis, str)
            else redis
        )
        self.rate = float(rate_per_second)
        self.burst = float(burst)
        self.prefix = prefix
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._down_until = -math.inf
        self.failures = 0  # answers Redis did not give

    async def take(self, key: str, cost: float = 1.0) -> RateDecision:
        """Spend ``cost`` tokens from ``key``'s shared bucket if it has them.

        Raises:
            RateLimitUnavailable: Redis did not answer (now, or within the last
                ``retry_seconds``).
        """
        _check_cost(cost, self.burst)
        if self._clock() < self._down_until:
            raise RateLimitUnavailable("the rate-limit store failed a moment ago")
        args = (repr(self.rate), repr(self.burst), repr(float(cost)))
        name = self.prefix + key
        try:
            try:
                reply = await self._client.evalsha(_SCRIPT_SHA, 1, name, *args)
            except self._no_script:
                # First use on this server (or after SCRIPT FLUSH / a restart): EVAL loads it.
                reply = await self._client.eval(_SCRIPT, 1, name, *args)
            allowed, retry = reply
        except self._failures as err:
            self.failures += 1
            self._down_until = self._clock() + self.retry_seconds
            raise RateLimitUnavailable(f"the rate-limit store did not answer: {err}") from err
        if int(allowed) == 1:
            return RateDecision(True, 0.0)
        # The script rounds to microseconds; a refusal never says "retry now".
        return RateDecision(False, max(float(retry), 1e-6))

    async def aclose(self) -> None:
        """Close the client if this bucket made it from a URL."""
        if self._own_client:
            await self._client.aclose()
