"""Circuit breakers shared by gateway processes through Redis.

Each process keeps its own :class:`~.breaker.CircuitBreaker` per service and decides
every request with it: no Redis round trip on a request's path. Every
:data:`SYNC_SECONDS` one pipelined call sends, for each service, what the local
breaker saw since the last sync and reads the shared breaker back (a Redis hash per
service: ``state``, ``generation``, ``opened_at`` on the Redis server's clock, and
``streak``, the failures in a row across processes), all in one Lua script:

- a local breaker that opened by its own count, or whose half-open trial failed,
  opens the shared one; one whose trial succeeded closes it, unless another process
  opened it again meanwhile (the generation moved on: the newer open wins);
- failures seen while closed add to the shared streak, and a success resets it to the
  failures that followed it, so failures spread over the processes open the breaker
  as they would in one process (in a row as far as a sync can tell);
- a process whose known generation differs takes the shared state
  (:meth:`~.breaker.CircuitBreaker.adopt`), open for what is left of the shared time.

Staleness: a breaker opened in one process rejects in every other within
:data:`SYNC_SECONDS` plus a Redis round trip. Once the open time is up each process
lets its own half-open trials through, so N processes make up to N trials.

Redis down, each process goes on with its local breaker alone (logged once); counts
made meanwhile are not sent later, but a breaker still open then opens the shared one.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmagentos.gateway.breaker import BreakerState, CircuitBreaker
from llmagentos.gateway.shared_state import RedisHealth, in_background

if TYPE_CHECKING:
    from llmagentos.gateway.app import Gateway

__all__ = ["SYNC_SECONDS", "SharedBreakers"]

log = logging.getLogger("llmagentos.gateway.shared")

#: Seconds between two syncs of the breakers: how stale a process's view may be.
SYNC_SECONDS = 0.2

# KEYS[1] the service's hash. ARGV: failures, reset (1: a success came), failures
# after the last success, failure threshold, open seconds, event ("open", "close" or
# ""), the generation the process knew, the key's TTL in ms.
# Returns {state, generation, opened_at, now}: times on the Redis server's clock.
_SCRIPT = """
local failures = tonumber(ARGV[1])
local reset = ARGV[2] == '1'
local trailing = tonumber(ARGV[3])
local threshold = tonumber(ARGV[4])
local open_seconds = tonumber(ARGV[5])
local event = ARGV[6]
local base = tonumber(ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local h = redis.call('HMGET', KEYS[1], 'state', 'generation', 'opened_at', 'streak')
local state = h[1] or 'closed'
local generation = tonumber(h[2]) or 0
local opened_at = tonumber(h[3]) or 0
local streak = tonumber(h[4]) or 0
local function open()
  state = 'open'
  generation = generation + 1
  opened_at = now
  streak = 0
end
if event == 'open' then
  if state ~= 'open' or now >= opened_at + open_seconds then open() end
elseif event == 'close' and state == 'open' and generation == base then
  state = 'closed'
  generation = generation + 1
  streak = 0
end
if state == 'closed' and (failures > 0 or reset) then
  if reset then streak = trailing else streak = streak + failures end
  if streak >= threshold then open() end
end
redis.call('HSET', KEYS[1], 'state', state, 'generation', generation,
           'opened_at', string.format('%.6f', opened_at), 'streak', streak)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return {state, generation, string.format('%.6f', opened_at), string.format('%.6f', now)}
"""


@dataclass(slots=True)
class _Tally:
    """What one local breaker saw since the last sync (its listener)."""

    failures: int = 0
    reset: bool = False
    trailing: int = 0  # failures after the last success
    moved_to: BreakerState | None = None  # its last move by its own rules

    def outcome(self, success: bool) -> None:
        if success:
            self.reset, self.trailing = True, 0
        else:
            self.failures += 1
            self.trailing += 1

    def moved(self, state: BreakerState) -> None:
        self.moved_to = state

    def take(self) -> tuple[int, bool, int, BreakerState | None]:
        taken = (self.failures, self.reset, self.trailing, self.moved_to)
        self.failures, self.reset, self.trailing, self.moved_to = 0, False, 0, None
        return taken


def _first_sight(breaker: CircuitBreaker) -> _Tally:
    """A listener for a breaker that may have been used before it had one: what it
    counted so far is told at the next sync."""
    seen = breaker.snapshot()
    streak = int(seen["consecutive_failures"])
    state = BreakerState(seen["state"])
    return _Tally(
        failures=streak, reset=int(seen["successes"]) > 0, trailing=streak,
        moved_to=None if state is BreakerState.CLOSED else state,
    )  # fmt: skip


def _event(breaker: CircuitBreaker, moved_to: BreakerState | None) -> str:
    """What the shared breaker must hear of a local move: "open", "close" or ""."""
    if moved_to is None:
        return ""
    state = breaker.state
    if state is BreakerState.OPEN:
        return "open"
    return "close" if state is BreakerState.CLOSED and moved_to is BreakerState.CLOSED else ""


class SharedBreakers:
    """Syncs the gateway's breakers with Redis (``client``) under ``namespace``."""

    def __init__(
        self, gateway: Gateway, client: Any, failures: tuple[type[BaseException], ...],
        namespace: str,
    ) -> None:  # fmt: skip
        self.gateway = gateway
        self._client = client
        self._failures = failures
        self._prefix = namespace + "breaker:"
        self._script = client.register_script(_SCRIPT)
        self._tallies: dict[str, tuple[CircuitBreaker, _Tally]] = {}
        self._known: dict[str, int] = {}  # the shared generation each breaker follows
        self.health = RedisHealth("shared breakers")

    def watch(self) -> None:
        """Listen to every registered service's breaker now (at start, and whenever the
        registry changes), before requests reach it."""
        self._watched()

    def _watched(self) -> list[tuple[str, CircuitBreaker, _Tally]]:
        """Every registered service's breaker, each with its listener."""
        registry = self.gateway.registry
        watched = []
        for name in registry.names():
            entry = registry.get(name)
            if entry is None:
                continue
            breaker = self.gateway.runtime_for(entry).breaker
            held = self._tallies.get(name)
            if held is None or held[0] is not breaker:  # new, or a service made anew
                held = self._tallies[name] = (breaker, _first_sight(breaker))
                breaker.listener = held[1]
                self._known.pop(name, None)
            watched.append((name, *held))
        for name in set(self._tallies) - {name for name, _, _ in watched}:
            del self._tallies[name]
            self._known.pop(name, None)
        return watched

    async def sync(self) -> None:
        """Send what each breaker saw, and take what the shared ones decided."""
        watched = self._watched()
        if not watched:
            return
        settings = self.gateway.resilience
        ttl_ms = int(max(600.0, 4 * settings.breaker_open_seconds) * 1000)
        pipe = self._client.pipeline(transaction=False)
        moves = []
        for name, breaker, tally in watched:
            failures, reset, trailing, moved_to = tally.take()
            moves.append(moved_to)
            args = [
                failures, int(reset), trailing, breaker.failure_threshold, breaker.open_seconds,
                _event(breaker, moved_to), self._known.get(name, -1), ttl_ms,
            ]  # fmt: skip
            await self._script(keys=[self._prefix + name], args=args, client=pipe)
        try:
            replies = await pipe.execute()
        except self._failures as err:
            self.health.failed(err)
            for (_, _, tally), moved_to in zip(watched, moves, strict=True):
                if tally.moved_to is None:  # told once Redis is back, if still so
                    tally.moved_to = moved_to
            return
        self.health.ok()
        for (name, breaker, _), reply in zip(watched, replies, strict=True):
            self._follow(name, breaker, reply)

    def _follow(self, name: str, breaker: CircuitBreaker, reply: Any) -> None:
        state, generation, opened_at, now = (
            item.decode() if isinstance(item, bytes) else str(item) for item in reply
        )
        if self._known.get(name) == int(generation):
            return
        self._known[name] = int(generation)
        local = breaker.state
        if state == "open":
            left = float(opened_at) + breaker.open_seconds - float(now)
            target = BreakerState.OPEN if left > 0 else BreakerState.HALF_OPEN
            if local is not target:
                breaker.adopt(BreakerState.OPEN, open_for=left)
        elif local is not BreakerState.CLOSED:
            breaker.adopt(BreakerState.CLOSED)

    def running(self) -> AbstractAsyncContextManager[None]:
        """Sync every :data:`SYNC_SECONDS` while the gateway serves."""

        async def loop(stopping: asyncio.Event) -> None:
            while not stopping.is_set():
                await asyncio.sleep(SYNC_SECONDS)
                try:
                    await self.sync()
                except Exception:  # a bug here must not stop the syncs for good
                    log.exception("shared breakers: sync failed")

        return in_background(loop, "shared-breakers")
