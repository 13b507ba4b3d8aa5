"""The Redis token bucket against a real ``redis-server`` on loopback.

Two bucket objects with separate clients stand for two gateway replicas: they must
spend from one shared limit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("redis", reason="the 'redis' package is not installed (extra: gateway)")

import redis.asyncio as aioredis

from llmagentos.gateway import RedisTokenBucket


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[Any]:
    """A factory of buckets, each with its own client (one per gateway replica)."""
    made: list[RedisTokenBucket] = []

    def make(rate: float, burst: float, prefix: str) -> RedisTokenBucket:
        # A generous timeout: these tests are about what Redis answers, and 120 sockets
        # opened at once on two busy cores can take longer than the 0.5 s default.
        bucket = RedisTokenBucket(redis_url, rate, burst, prefix=prefix, timeout=5.0)
        made.append(bucket)
        return bucket

    yield make
    for bucket in made:
        await bucket.aclose()


def fresh() -> str:
    return f"test:{uuid.uuid4().hex}:"


async def test_one_bucket_allows_the_burst_then_refuses(replicas: Any) -> None:
    bucket = replicas(0.5, 10, fresh())
    results = [await bucket.take("tenant-a") for _ in range(15)]
    assert [r.allowed for r in results] == [True] * 10 + [False] * 5
    assert all(r.retry_after == 0 for r in results[:10])
    # One token takes 2 s at 0.5/s; a little of it may already have refilled.
    assert all(1.5 < r.retry_after <= 2.0 for r in results[10:])


async def test_two_replicas_share_one_limit(replicas: Any) -> None:
    prefix = fresh()
    first, second = replicas(0.5, 10, prefix), replicas(0.5, 10, prefix)
    assert first._client is not second._client
    allowed = 0
    for i in range(30):  # alternate, as a load balancer would
        bucket = first if i % 2 == 0 else second
        allowed += (await bucket.take("key")).allowed
    assert allowed == 10  # exactly what one bucket allows: no refill token in < 2 s
    # Another key has its own bucket.
    assert (await second.take("other")).allowed


async def test_concurrent_takes_across_replicas_are_atomic(replicas: Any) -> None:
    prefix = fresh()
    buckets = [replicas(0.01, 25, prefix) for _ in range(3)]
    results = await asyncio.wait_for(
        asyncio.gather(*(buckets[i % 3].take("k") for i in range(120))), 10
    )
    assert sum(r.allowed for r in results) == 25


async def test_refill_at_the_rate_measured_by_the_server(replicas: Any) -> None:
    bucket = replicas(20, 2, fresh())
    assert [(await bucket.take("k")).allowed for _ in range(3)] == [True, True, False]
    refused = await bucket.take("k")
    assert 0 < refused.retry_after <= 0.05  # one token per 50 ms
    await asyncio.sleep(refused.retry_after + 0.02)
    assert (await bucket.take("k")).allowed


async def test_cost_and_key_ttl(replicas: Any, redis_url: str) -> None:
    prefix = fresh()
    bucket = replicas(2, 4, prefix)
    assert (await bucket.take("k", cost=3)).allowed
    decision = await bucket.take("k", cost=3)
    assert not decision.allowed and 0.9 < decision.retry_after <= 1.0
    client = aioredis.from_url(redis_url)
    try:
        ttl_ms = await client.pttl(prefix + "k")
        # Gone once the bucket would be full again (2 s) plus a second of slack.
        assert 2000 < ttl_ms <= 3000
    finally:
        await client.aclose()


async def test_script_flush_falls_back_to_eval(replicas: Any, redis_url: str) -> None:
    bucket = replicas(1, 3, fresh())
    assert (await bucket.take("k")).allowed
    client = aioredis.from_url(redis_url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    assert (await bucket.take("k")).allowed  # EVALSHA misses, EVAL reloads the script
    assert (await bucket.take("k")).allowed
    assert not (await bucket.take("k")).allowed


async def test_a_client_can_be_passed_in(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        bucket = RedisTokenBucket(client, 1, 1, prefix=fresh())
        assert (await bucket.take("k")).allowed
        await bucket.aclose()  # not ours: stays open
        assert await client.ping()
    finally:
        await client.aclose()
