"""Breakers and the run-time registry shared through a real Redis, in process.

Two :class:`Gateway` objects with their own Redis clients stand for two workers; the
syncs their loops would run are called by hand, so each step is deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("redis", reason="the 'redis' package is not installed (extra: gateway)")
pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

from llmagentos.gateway import Gateway, ServiceRegistry
from llmagentos.gateway.breaker import BreakerState, CircuitBreaker
from llmagentos.gateway.runtime import ResilienceSettings
from llmagentos.gateway.shared_breakers import SharedBreakers
from llmagentos.gateway.shared_registry import SharedRegistry
from llmagentos.gateway.shared_state import in_background, namespace_for, redis_client

UP = "http://127.0.0.1:9101"


def _gateway(open_seconds: float = 60.0) -> Gateway:
    settings = ResilienceSettings(
        breaker_failures=3, breaker_open_seconds=open_seconds, health_interval=0
    )
    return Gateway(ServiceRegistry([{"name": "up", "replicas": [UP]}]), resilience=settings)


@pytest.fixture
async def workers(redis_url: str) -> AsyncIterator[Any]:
    """A factory of (gateway, shared breakers, shared registry), one Redis client each,
    all in one fresh namespace."""
    namespace = f"test:{uuid.uuid4().hex}:"
    clients: list[Any] = []

    def make(open_seconds: float = 60.0) -> tuple[Gateway, SharedBreakers, SharedRegistry]:
        gateway = _gateway(open_seconds)
        client, failures = redis_client(redis_url)
        clients.append(client)
        breakers = SharedBreakers(gateway, client, failures, namespace)
        registry = SharedRegistry(gateway, client, failures, namespace)
        gateway.admin.changes = registry
        return gateway, breakers, registry

    yield make
    for client in clients:
        await client.aclose()


def _breaker(gateway: Gateway) -> CircuitBreaker:
    entry = gateway.registry.get("up")
    assert entry is not None
    return gateway.runtime_for(entry).breaker


def _calls(breaker: CircuitBreaker, *outcomes: bool) -> None:
    for ok in outcomes:
        permit = breaker.acquire()
        assert permit is not None
        permit.record(ok)


async def test_failures_spread_over_workers_open_the_breaker_for_all(workers: Any) -> None:
    (one, one_sync, _), (two, two_sync, _) = workers(), workers()
    await one_sync.sync(), await two_sync.sync()  # both watch "up"
    _calls(_breaker(one), False, False)  # 2 of 3: not open on its own
    await one_sync.sync()
    _calls(_breaker(two), False)  # the third failure in a row, on the other worker
    await two_sync.sync()
    assert _breaker(two).state is BreakerState.OPEN
    assert _breaker(one).state is BreakerState.CLOSED  # until its next sync
    await one_sync.sync()
    assert _breaker(one).state is BreakerState.OPEN
    assert _breaker(one).acquire() is None
    assert 55 < _breaker(one).retry_after() <= 60  # the shared open time, not a new one


async def test_a_success_anywhere_breaks_the_run_of_failures(workers: Any) -> None:
    (one, one_sync, _), (two, two_sync, _) = workers(), workers()
    await one_sync.sync(), await two_sync.sync()
    _calls(_breaker(one), False, False)
    await one_sync.sync()
    _calls(_breaker(two), True, False)  # a success, then one failure after it
    await two_sync.sync()
    _calls(_breaker(one), True, False)  # one's own run restarts too: 1 after its success
    await one_sync.sync()
    await two_sync.sync()
    assert _breaker(one).state is BreakerState.CLOSED
    assert _breaker(two).state is BreakerState.CLOSED


async def test_one_workers_breaker_opens_and_closes_everyone(workers: Any) -> None:
    (one, one_sync, _), (two, two_sync, _) = workers(0.3), workers(0.3)
    await one_sync.sync(), await two_sync.sync()
    _calls(_breaker(one), False, False, False)  # opens on its own count
    assert _breaker(one).state is BreakerState.OPEN
    await one_sync.sync()
    await two_sync.sync()
    assert _breaker(two).state is BreakerState.OPEN
    while _breaker(one).state is BreakerState.OPEN:  # the open time passes
        await asyncio.sleep(0.05)
    trial = _breaker(one).acquire()
    assert trial is not None and trial.trial
    trial.success()  # closes one
    await one_sync.sync()
    await two_sync.sync()
    assert _breaker(two).state is BreakerState.CLOSED
    assert _breaker(two).acquire() is not None


async def test_a_close_after_another_worker_reopened_is_ignored(workers: Any) -> None:
    (one, one_sync, _), (two, two_sync, _) = workers(0.3), workers(0.3)
    await one_sync.sync(), await two_sync.sync()
    _calls(_breaker(one), False, False, False)
    await one_sync.sync()
    await two_sync.sync()
    while _breaker(one).state is BreakerState.OPEN or _breaker(two).state is BreakerState.OPEN:
        await asyncio.sleep(0.05)
    one_trial, two_trial = _breaker(one).acquire(), _breaker(two).acquire()
    assert one_trial is not None and two_trial is not None
    two_trial.failure()  # two reopens it first...
    await two_sync.sync()
    one_trial.success()  # ...so one's success, about the older open, closes nothing shared
    await one_sync.sync()
    assert _breaker(one).state is BreakerState.OPEN
    assert _breaker(two).state is BreakerState.OPEN


async def test_a_replica_registered_on_one_worker_is_routed_by_the_other(workers: Any) -> None:
    (one, _, one_registry), (two, _, two_registry) = workers(), workers()
    await one_registry.first_sync(), await two_registry.first_sync()
    await one.admin.changes.register("extra", "http://127.0.0.1:9102/")
    assert two.registry.get("extra") is None  # until it hears of it
    await two_registry._check()  # what its loop does every POLL_SECONDS
    entry = two.registry.get("extra")
    assert entry is not None and entry.replicas == ["http://127.0.0.1:9102"]
    await two.admin.changes.register("up", "http://127.0.0.1:9103")
    await one_registry._check()
    up = one.registry.get("up")
    assert up is not None and up.replicas == [UP, "http://127.0.0.1:9103"]
    assert up.timeout == 30.0 and one.registry.names() == ["extra", "up"]
    # The last replica removed: the service is gone everywhere, and forgotten.
    two.runtime_for(entry)
    assert await one.admin.changes.deregister("extra", "http://127.0.0.1:9102") is True
    assert await one.admin.changes.deregister("extra", "http://127.0.0.1:9102") is False
    await two_registry._check()
    assert two.registry.get("extra") is None and "extra" not in two.runtimes


async def test_a_redis_that_lost_the_registry_is_seeded_from_what_a_worker_knew(
    workers: Any, redis_url: str
) -> None:
    (one, _, one_registry), (two, _, two_registry) = workers(), workers()
    await one_registry.first_sync(), await two_registry.first_sync()
    await one.admin.changes.register("extra", "http://127.0.0.1:9102")
    await two_registry._check()
    client, _ = redis_client(redis_url)
    await client.delete(*one_registry._keys)  # as a restart without persistence would
    await two_registry._check()  # finds no version: seeds Redis with what it knew
    assert sorted(two.registry.names()) == ["extra", "up"]
    assert json.loads(await client.hget(one_registry._keys[0], "extra")) == [
        "http://127.0.0.1:9102"
    ]
    # Junk written to Redis is never routed to.
    await client.hset(one_registry._keys[0], "bad", json.dumps(["ftp://x"]))
    await client.hincrby(one_registry._keys[1], "n", 1)
    await one_registry._check()
    assert one.registry.get("bad") is None and one.registry.get("extra") is not None
    await client.aclose()


async def test_redis_down_keeps_the_last_state_and_refuses_changes() -> None:
    gateway = _gateway()
    client, failures = redis_client("redis://127.0.0.1:9/0")  # nothing listens there
    breakers = SharedBreakers(gateway, client, failures, "test:down:")
    registry = SharedRegistry(gateway, client, failures, "test:down:")
    await registry.first_sync()
    await breakers.sync()  # no exception: logged, the local state goes on
    assert not breakers.health.up and not registry.health.up
    _calls(_breaker(gateway), False, False, False)
    assert _breaker(gateway).state is BreakerState.OPEN  # the local breaker still works
    from llmagentos.exceptions import GatewayError

    with pytest.raises(GatewayError) as refused:
        await registry.register("extra", "http://127.0.0.1:9102")
    assert refused.value.status == 503 and gateway.registry.get("extra") is None
    assert gateway.registry.names() == ["up"]
    await client.aclose()


def test_the_namespace_follows_the_configured_services() -> None:
    assert namespace_for(_gateway()) == namespace_for(_gateway())
    other = Gateway(ServiceRegistry([{"name": "up", "replicas": ["http://127.0.0.1:9104"]}]))
    assert namespace_for(other) != namespace_for(_gateway())


async def test_a_loop_that_swallows_its_cancellation_still_stops() -> None:
    """What redis-py under Python 3.11 can do (a cancellation seen as a timeout): the
    stop flag ends the loop, so the gateway's shutdown is not held."""
    rounds = 0

    async def stubborn(stopping: asyncio.Event) -> None:
        nonlocal rounds
        while not stopping.is_set():
            rounds += 1
            with contextlib.suppress(asyncio.CancelledError):  # as a loop that survives
                await asyncio.sleep(0.01)  # Redis timeouts would swallow it

    async with in_background(stubborn, "stubborn"):
        while rounds < 3:
            await asyncio.sleep(0.01)
    assert [t for t in asyncio.all_tasks() if t.get_name() == "stubborn"] == []
