"""Retries within budget, no retries on 4xx, and the circuit breaker, at the gateway.

The upstream is the test app in process (two "replicas" of it by host name, sharing its
call counter), so the gateway's own behaviour is what is measured.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytest.importorskip("starlette", reason="needs llmagentos[serve]")

from llmagentos.gateway import Gateway, ServiceRegistry
from llmagentos.gateway.runtime import ResilienceSettings
from llmagentos.gateway.testing import COUNTS
from llmagentos.gateway.testing import app as upstream


def _client(**settings: object) -> httpx.AsyncClient:
    registry = ServiceRegistry(
        [{"name": "up", "replicas": ["http://a.test", "http://b.test"], "timeout": 5}]
    )
    gateway = Gateway(
        registry,
        transport=httpx.ASGITransport(app=upstream),
        resilience=ResilienceSettings(**settings),  # type: ignore[arg-type]
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway.app()), base_url="http://gateway.test"
    )


async def test_a_half_failing_upstream_costs_at_most_20_percent_more_requests() -> None:
    client = _client(retry_floor_per_second=0.0, breaker_failures=1000, eject_after_failures=1000)
    before = COUNTS["calls"]
    replies = [await client.get("/up/flaky") for _ in range(200)]
    upstream_calls = COUNTS["calls"] - before
    assert upstream_calls / 200 <= 1.2  # the retry budget holds
    assert upstream_calls > 200  # and it did retry some
    ok = sum(r.status_code == 200 for r in replies)
    assert ok > 100  # the retries turned failures into successes


async def test_a_post_and_4xx_are_never_retried() -> None:
    # A generous budget and no breaker: only the retry rules can stop a retry here.
    client = _client(retry_floor_per_second=100.0, breaker_failures=1000,
                     eject_after_failures=1000)  # fmt: skip
    before = COUNTS["calls"]
    assert [(await client.get("/up/status/418")).status_code for _ in range(10)] == [418] * 10
    assert [(await client.post("/up/status/503")).status_code for _ in range(10)] == [503] * 10
    assert COUNTS["calls"] - before == 20  # one upstream call per client call
    keyed = await client.post("/up/status/503", headers={"idempotency-key": "k1"})
    assert keyed.status_code == 503 and COUNTS["calls"] - before == 22  # keyed POST: retried


async def test_the_breaker_opens_rejects_fast_half_opens_and_closes() -> None:
    client = _client(breaker_failures=3, breaker_open_seconds=0.5, eject_after_failures=1000,
                     retry_ratio=0.0, retry_floor_per_second=0.0)  # fmt: skip
    for _ in range(3):
        assert (await client.get("/up/status/500")).status_code == 500
    before = COUNTS["calls"]
    rejected = await client.get("/up/status/200")
    assert rejected.status_code == 503 and "circuit open" in rejected.json()["detail"]
    assert int(rejected.headers["retry-after"]) >= 1
    assert COUNTS["calls"] == before  # rejected without touching the upstream
    await asyncio.sleep(0.6)
    trial = await client.get("/up/status/200")  # half-open: one trial call goes through
    assert trial.status_code == 200
    assert (await client.get("/up/status/200")).status_code == 200  # closed again
    for _ in range(3):
        await client.get("/up/status/500")
    assert (await client.get("/up/status/200")).status_code == 503  # and it can open again
