"""The run-time registry shared by gateway processes through Redis.

The replicas of every service live in one Redis hash (service name -> JSON list of
URLs) beside a version (a counter and an epoch). The admin routes change it with one
Lua script, which bumps the version and publishes it; every process then reads the
whole hash and makes its registry match (service settings stay the config's; a
service created at run time has the defaults, as in one process).

Staleness: a process hears a change at once on the pub/sub channel, and checks the
version every :data:`POLL_SECONDS` in case it missed the message (a dropped
connection), so it follows a change within that bound.

Redis down, a process keeps the registry it last knew and refuses changes (503:
applied in one process only they would be undone, or kept apart, once Redis is back).
A Redis that comes back empty (restarted without persistence) is seeded again from the
first process to reach it, from what it last knew.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from llmagentos.exceptions import ConfigError, GatewayError
from llmagentos.gateway.registry import ServiceEntry, check_replica_url, check_service_name
from llmagentos.gateway.shared_state import RedisHealth, in_background

if TYPE_CHECKING:
    from llmagentos.gateway.app import Gateway

__all__ = ["POLL_SECONDS", "SharedRegistry"]

log = logging.getLogger("llmagentos.gateway.shared")

#: Seconds between two checks of the shared version (besides the pub/sub message).
POLL_SECONDS = 1.0
#: Seconds to wait for the shared registry before a process starts serving.
FIRST_SYNC_SECONDS = 2.0

# KEYS[1] the replicas hash, KEYS[2] the version hash. ARGV: the operation ("read",
# "register" or "deregister"), service, url, the channel, an epoch for a new version,
# then (name, JSON list) pairs to seed an empty Redis with.
# Returns {changed (0/1), version, epoch, {name, list, ...}}.
_SCRIPT = """
local op, name, url, channel, epoch = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  redis.call('HSET', KEYS[2], 'n', 0, 'epoch', epoch)
end
local changed = 0
if op == 'register' or op == 'deregister' then
  local raw = redis.call('HGET', KEYS[1], name)
  local urls = {}
  if raw then urls = cjson.decode(raw) end
  local at = nil
  for i, known in ipairs(urls) do
    if known == url then at = i end
  end
  if op == 'register' and at == nil then
    table.insert(urls, url)
    changed = 1
  elseif op == 'deregister' and at ~= nil then
    table.remove(urls, at)
    changed = 1
  end
  if changed == 1 then
    if #urls == 0 then
      redis.call('HDEL', KEYS[1], name)
    else
      redis.call('HSET', KEYS[1], name, cjson.encode(urls))
    end
    redis.call('PUBLISH', channel, redis.call('HINCRBY', KEYS[2], 'n', 1))
  end
end
local version = redis.call('HMGET', KEYS[2], 'n', 'epoch')
return {changed, version[1], version[2], redis.call('HGETALL', KEYS[1])}
"""


def _text(item: Any) -> str:
    return item.decode() if isinstance(item, bytes) else str(item)


class SharedRegistry:
    """Keeps the gateway's registry in step with Redis (``client``) under ``namespace``;
    the admin routes' ``changes``."""

    def __init__(
        self, gateway: Gateway, client: Any, failures: tuple[type[BaseException], ...],
        namespace: str,
    ) -> None:  # fmt: skip
        self.gateway = gateway
        self._client = client
        self._failures = failures
        self._keys = [namespace + "registry:replicas", namespace + "registry:version"]
        self._channel = namespace + "registry:changed"
        self._script = client.register_script(_SCRIPT)
        self._version: tuple[str, int] | None = None  # (epoch, counter) last applied
        self.followed: Callable[[], None] | None = None  # after each change taken
        self.health = RedisHealth("shared registry")

    # -- the admin routes' changes --------------------------------------------------------

    async def register(self, name: str, url: str) -> ServiceEntry:
        """Add a replica for every process; raises :class:`GatewayError` 503 when Redis
        does not answer (nothing changed)."""
        check_service_name(name)
        await self._call("register", name, check_replica_url(url))
        entry = self.gateway.registry.get(name)
        if entry is None:  # removed again by another process in between
            raise GatewayError(409, f"{name!r} was changed meanwhile; try again", field="url")
        return entry

    async def deregister(self, name: str, url: str) -> bool:
        return bool(await self._call("deregister", name, url.rstrip("/")))

    # -- following Redis ------------------------------------------------------------------

    async def _call(self, op: str, name: str = "", url: str = "") -> int:
        seed: list[str] = []
        for service in self.gateway.registry.to_dict():  # for a Redis that lost it all
            seed += [service["name"], json.dumps(service["replicas"])]
        args = [op, name, url, self._channel, secrets.token_hex(8), *seed]
        try:
            changed, counter, epoch, flat = await self._script(keys=self._keys, args=args)
        except self._failures as err:
            self.health.failed(err)
            if op == "read":
                raise
            detail = "the shared registry (Redis) does not answer: nothing was changed"
            raise GatewayError(503, detail) from err
        self.health.ok()
        self._apply((_text(epoch), int(counter)), flat)
        return int(changed)

    def _apply(self, version: tuple[str, int], flat: list[Any]) -> None:
        """Make the local registry what Redis holds (unless it is older than ours)."""
        known = self._version
        if known is not None and known[0] == version[0] and known[1] >= version[1]:
            return
        self._version = version
        services: dict[str, list[str]] = {}
        for name, raw in zip(flat[::2], flat[1::2], strict=True):
            try:
                urls = [check_replica_url(str(url)) for url in json.loads(raw)]
                services[check_service_name(_text(name))] = urls
            except (ValueError, TypeError, ConfigError) as err:  # never route to junk
                log.warning("shared registry: skipping %r: %s", _text(name), err)
        for gone in self.gateway.registry.follow(services):
            self.gateway.forget(gone)
        if self.followed is not None:
            self.followed()

    async def _check(self) -> None:
        """Read the whole registry if its version moved (or Redis lost it)."""
        counter, epoch = await self._client.hmget(self._keys[1], ["n", "epoch"])
        if counter is None or self._version != (_text(epoch), int(counter)):
            await self._call("read")

    async def first_sync(self) -> None:
        """Take the shared registry before serving (Redis down: the config's, logged)."""
        try:
            await asyncio.wait_for(self._call("read"), FIRST_SYNC_SECONDS)
        except self._failures as err:  # TimeoutError among them
            self.health.failed(err)

    async def _follow(self, stopping: asyncio.Event) -> None:
        """Listen for changes, and check the version every :data:`POLL_SECONDS`."""
        while not stopping.is_set():
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                await self._call("read")  # what changed while not subscribed
                while not stopping.is_set():
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=POLL_SECONDS
                    )
                    await (self._call("read") if message is not None else self._check())
            except self._failures as err:
                self.health.failed(err)
                await asyncio.sleep(POLL_SECONDS)
            except Exception:  # a bug here must not stop following for good
                log.exception("shared registry: following failed")
                await asyncio.sleep(POLL_SECONDS)
            finally:
                with contextlib.suppress(*self._failures):
                    await pubsub.aclose()

    def running(self) -> AbstractAsyncContextManager[None]:
        """Follow the shared registry while the gateway serves."""
        return in_background(self._follow, "shared-registry")
