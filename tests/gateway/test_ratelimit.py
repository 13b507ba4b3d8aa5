"""The in-process token bucket, exact under an injected clock."""

from __future__ import annotations

import threading

import pytest

from llmagentos.exceptions import ConfigError, MissingExtraError
from llmagentos.gateway import ManualClock, RateDecision, TokenBucket


def test_burst_then_refill_at_the_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(2, 5, clock=clock)
    assert [bucket.take_now("k").allowed for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take_now("k") == RateDecision(False, pytest.approx(0.5))
    clock.advance(0.25)
    assert bucket.take_now("k") == RateDecision(False, pytest.approx(0.25))
    clock.advance(0.25)
    assert bucket.take_now("k") == (True, 0.0)
    assert not bucket.take_now("k").allowed
    clock.advance(100)  # refills to the burst, not beyond
    assert [bucket.take_now("k").allowed for _ in range(6)] == [True] * 5 + [False]


def test_retry_after_is_exactly_when_the_call_would_pass() -> None:
    clock = ManualClock()
    bucket = TokenBucket(3, 4, clock=clock)
    for _ in range(4):
        bucket.take_now("k")
    allowed, wait = bucket.take_now("k", cost=2)
    assert not allowed and wait == pytest.approx(2 / 3)
    clock.advance(wait - 1e-6)
    assert not bucket.take_now("k", cost=2).allowed
    clock.advance(2e-6)
    assert bucket.take_now("k", cost=2).allowed


def test_over_a_long_run_the_rate_holds() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, 20, clock=clock)
    allowed = 0
    for _ in range(6000):  # 100 attempts per second for 60 s
        allowed += bucket.take_now("k").allowed
        clock.advance(0.01)
    assert 619 <= allowed <= 620  # the burst, plus 10/s for the 59.99 s the loop spans


def test_keys_are_independent() -> None:
    bucket = TokenBucket(1, 1, clock=ManualClock())
    assert bucket.take_now("a").allowed
    assert not bucket.take_now("a").allowed
    assert bucket.take_now("b").allowed


async def test_async_take_is_the_same_bucket() -> None:
    bucket = TokenBucket(1, 2, clock=ManualClock())
    assert (await bucket.take("k")).allowed
    assert bucket.take_now("k").allowed
    assert not (await bucket.take("k")).allowed


def test_threads_never_overspend() -> None:
    bucket = TokenBucket(1e-6, 500)  # real clock, no meaningful refill during the test
    allowed: list[bool] = []

    def worker() -> None:
        for _ in range(200):
            allowed.append(bucket.take_now("k").allowed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(allowed) == 500 and len(allowed) == 1600


def test_idle_full_buckets_are_swept() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, 10, clock=clock, max_keys=100)
    for i in range(100):
        bucket.take_now(f"k{i}")
    clock.advance(1)  # every bucket is full again
    bucket.take_now("fresh")
    assert len(bucket._buckets) == 1
    # A bucket that is still owed tokens survives the sweep, with its debt.
    for _ in range(10):
        bucket.take_now("busy")
    for i in range(100):
        bucket.take_now(f"x{i}")
    assert not bucket.take_now("busy").allowed


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5), (float("inf"), 1)])
def test_bad_settings(rate: float, burst: float) -> None:
    with pytest.raises(ConfigError):
        TokenBucket(rate, burst)


def test_a_cost_above_the_burst_is_refused() -> None:
    bucket = TokenBucket(1, 3)
    with pytest.raises(ConfigError):
        bucket.take_now("k", cost=4)
    with pytest.raises(ConfigError):
        bucket.take_now("k", cost=0)


def test_redis_bucket_without_redis_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from llmagentos.gateway import RedisTokenBucket

    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingExtraError) as info:
        RedisTokenBucket("redis://127.0.0.1:1", 1, 1)
    assert info.value.extra == "gateway" and info.value.package == "redis"
