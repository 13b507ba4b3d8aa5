"""The gateway's state shared through Redis: breakers and the run-time registry.

With ``[gateway] redis_url`` set, every gateway process using that Redis (the workers
of ``llmagentos gateway --workers N``, and gateways on other hosts with the same
``[[services]]``) shares

- each service's circuit breaker (:mod:`.shared_breakers`): synced every
  :data:`~.shared_breakers.SYNC_SECONDS`, never on a request's path;
- the replicas registered and removed at run time (:mod:`.shared_registry`): each
  change is published at once and checked for every
  :data:`~.shared_registry.POLL_SECONDS`;
- the rate limits (:class:`~.ratelimit.RedisTokenBucket`, already per request).

Redis down, each process keeps the breakers and registry it last knew and goes on on
its own (logged once, and again once Redis is back); run-time registry changes are
refused (503) until Redis answers, so the processes cannot drift apart.

The keys live under ``llmagentos:gateway:<fingerprint>:``, the fingerprint of the
config's ``[[services]]``: gateways with other services do not share.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from llmagentos.exceptions import MissingExtraError

if TYPE_CHECKING:
    from llmagentos.gateway.app import Gateway

__all__ = [
    "REDIS_TIMEOUT", "RedisHealth", "in_background", "namespace_for", "redis_client",
    "share_state",
]  # fmt: skip

log = logging.getLogger("llmagentos.gateway.shared")

#: Seconds to connect to Redis and to get each answer.
REDIS_TIMEOUT = 0.5
#: Seconds a sync loop may take to end at shutdown.
STOP_SECONDS = 5.0


def redis_client(url: str) -> tuple[Any, tuple[type[BaseException], ...]]:
    """An asyncio Redis client for ``url`` and the exceptions that mean "Redis failed"."""
    try:
        import redis.asyncio as aioredis
        import redis.exceptions as redis_errors
    except ImportError as err:
        raise MissingExtraError("shared gateway state", "gateway", "redis") from err
    client = aioredis.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
    )
    return client, (redis_errors.RedisError, OSError, TimeoutError)


def namespace_for(gateway: Gateway) -> str:
    """The key prefix of the gateways that route to the same configured services."""
    services = json.dumps(gateway.registry.to_dict(), sort_keys=True)
    return f"llmagentos:gateway:{hashlib.sha256(services.encode()).hexdigest()[:16]}:"


class RedisHealth:
    """Whether one user of Redis (``what``) got its last answer; logs each change once."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.up = True
        self.failures = 0

    def ok(self) -> None:
        if not self.up:
            log.warning("%s: Redis answers again; sharing resumed", self.what)
        self.up = True

    def failed(self, err: BaseException) -> None:
        self.failures += 1
        if self.up:
            log.warning(
                "%s: Redis does not answer (%s); keeping the last known state locally",
                self.what, str(err) or type(err).__name__,
            )  # fmt: skip
        self.up = False


@asynccontextmanager
async def in_background(
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]], name: str
) -> AsyncIterator[None]:
    """Run ``run(stopping)`` as a task while the body runs, then stop it: ``stopping``
    is set and the task cancelled, and waited for :data:`STOP_SECONDS` at most (a
    cancellation a client library turns into a timeout must not hold the shutdown)."""
    # The flag, not only the cancellation: redis-py under Python 3.11 can turn a
    # cancellation into a timeout, which a loop that survives Redis timeouts swallows.
    stopping = asyncio.Event()
    task = asyncio.create_task(run(stopping), name=name)
    try:
        yield
    finally:
        stopping.set()
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_SECONDS)
        if not task.done():
            log.warning("%s did not stop within %g s; left behind", name, STOP_SECONDS)
        elif not task.cancelled():
            task.exception()  # retrieved: it ended as it was told to


def share_state(gateway: Gateway, redis_url: str) -> None:
    """Share ``gateway``'s breakers and run-time registry through Redis at ``redis_url``
    once its app starts (its lifespan runs the sync loops)."""
    namespace = namespace_for(gateway)  # of the config's services, before any change
    try:  # a clear error now, not in each worker's lifespan
        import redis.asyncio  # noqa: F401
    except ImportError as err:
        raise MissingExtraError("shared gateway state", "gateway", "redis") from err

    def running() -> AbstractAsyncContextManager[None]:
        return _running(gateway, redis_url, namespace)

    gateway.background.append(running)


@asynccontextmanager
async def _running(gateway: Gateway, redis_url: str, namespace: str) -> AsyncIterator[None]:
    from llmagentos.gateway.shared_breakers import SharedBreakers
    from llmagentos.gateway.shared_registry import SharedRegistry

    client, failures = redis_client(redis_url)  # made in the serving loop, for its sockets
    breakers = SharedBreakers(gateway, client, failures, namespace)
    registry = SharedRegistry(gateway, client, failures, namespace)
    gateway.admin.changes = registry
    gateway.admin.shared = lambda: {
        "breakers": "up" if breakers.health.up else "down",
        "registry": "up" if registry.health.up else "down",
    }
    registry.followed = breakers.watch  # a new service's breaker is shared from its start
    await registry.first_sync()  # a worker starts with what the others already know
    breakers.watch()
    async with breakers.running(), registry.running():
        yield
    closing = asyncio.ensure_future(client.aclose())
    await asyncio.wait({closing}, timeout=STOP_SECONDS)  # closing never holds the shutdown
    if closing.done() and not closing.cancelled():
        closing.exception()  # a failure to close is nothing to report
