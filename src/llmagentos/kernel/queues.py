"""The waiting room of one backend: priority first, then weighted fair queueing or FIFO.

``fair`` is self-clocked weighted fair queueing by agent. Each request gets a virtual
finish tag ``max(now, agent's last tag) + 1 / weight``, where ``now`` is the tag of the
request served last; the smallest tag is served first. An agent that queued 1000 calls
holds tags ``now+1 ... now+1000``, so a newcomer's tag ``now+1`` is served within about
one round: nobody is starved however much another agent queues. ``fifo`` is arrival
order. Within a priority level the policy decides; a higher priority always goes first.

Removal is lazy: a cancelled item stays in the heap until it surfaces and is skipped,
so cancelling is O(1) and popping amortised O(log n).

The rest of this module is what waits: the scheduler's records of agents, backends,
tickets (one per call) and batches. Their fields change only under the scheduler's lock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, Literal, TypeVar

from llmagentos.exceptions import BudgetExceeded
from llmagentos.llm.base import Model
from llmagentos.llm.types import ModelRequest, ModelResponse

__all__ = [
    "DONE",
    "GRANTED",
    "REJECTED",
    "RESOLVED",
    "WAITING",
    "AgentRecord",
    "BackendRecord",
    "Batch",
    "WAIT_SAMPLES",
    "Key",
    "Loop",
    "Outcome",
    "Policy",
    "Ticket",
    "WaitQueue",
    "call_in",
    "quantile",
    "resolve",
]

WAIT_SAMPLES = 1024
"""Per agent, the wait statistics in ``Scheduler.state()`` cover this many recent calls."""

T = TypeVar("T")
Policy = Literal["fair", "fifo"]
Key = tuple[int, float, int]
"""Where a queued item stands: (priority, virtual finish tag, arrival number)."""


class _Level(Generic[T]):
    """The items of one priority: a heap of (tag, arrival, item) and its fair clock."""

    __slots__ = ("clock", "finish", "heap")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, T]] = []
        self.clock = 0.0  # the tag of the item served last
        self.finish: dict[str, float] = {}  # each agent's last finish tag

    def reset(self) -> None:
        # Empty: every tag is <= the clock, so forgetting them all changes nothing (and
        # keeps ``finish`` from growing with every agent ever seen).
        self.clock = 0.0
        self.finish.clear()


class WaitQueue(Generic[T]):
    """Items waiting for a slot, popped by priority, then by the policy.

    Args:
        policy: ``fair`` (weighted fair queueing by agent) or ``fifo`` (arrival order).
        alive: tells whether a popped item is still waiting; dead ones are skipped.
    """

    def __init__(self, policy: Policy, alive: Callable[[T], bool]) -> None:
        if policy not in ("fair", "fifo"):
            raise ValueError(f"policy must be 'fair' or 'fifo', got {policy!r}")
        self.policy = policy
        self._fair = policy == "fair"
        self._alive = alive
        self._arrivals = itertools.count()
        # One heap per priority (few in practice), so a comparison is two floats/ints.
        self._levels: dict[int, _Level[T]] = {}
        self._order: list[int] = []  # the priorities in _levels, highest first

    def __len__(self) -> int:
        """Queued entries, including cancelled ones not yet skipped."""
        return sum(len(level.heap) for level in self._levels.values())

    def _level(self, priority: int) -> _Level[T]:
        level = self._levels.get(priority)
        if level is None:
            level = self._levels[priority] = _Level()
            self._order = sorted(self._levels, reverse=True)
        return level

    def push(self, item: T, agent: str, priority: int = 0, weight: float = 1.0) -> Key:
        """Queue ``item``; returns its key (pass it to :meth:`restore` to keep its place)."""
        level = self._levels.get(priority) or self._level(priority)
        arrival = next(self._arrivals)
        if self._fair:
            start, last = level.clock, level.finish.get(agent, 0.0)
            tag = (last if last > start else start) + 1.0 / weight
            level.finish[agent] = tag
        else:
            tag = float(arrival)
        heapq.heappush(level.heap, (tag, arrival, item))
        return (priority, tag, arrival)

    def restore(self, item: T, key: Key) -> None:
        """Put an item back where it was (a batch that never ran returns its members)."""
        heapq.heappush(self._level(key[0]).heap, (key[1], key[2], item))

    def pop(self) -> T | None:
        """The next live item, or ``None`` when nothing is waiting."""
        alive = self._alive
        for priority in self._order:
            level = self._levels[priority]
            heap = level.heap
            while heap:
                tag, _arrival, item = heapq.heappop(heap)
                if alive(item):
                    if tag > level.clock:  # noqa: PLR1730 - max() is 5x slower here
                        level.clock = tag
                    if not heap:
                        level.reset()
                    return item
            level.reset()
        return None


# Ticket states. The lock holder moves a ticket between them; its caller marks it DONE.
WAITING = 0  # in the queue
GRANTED = 1  # holds a slot, or a place in a batch
RESOLVED = 2  # its batch delivered the reply (or the error)
REJECTED = 3  # refused before it ran: budget used up meanwhile, or the scheduler closed
DONE = 4  # its caller has finished with it

Outcome = Literal["ok", "error", "timeout", "cancelled", "rejected"]
Loop = asyncio.AbstractEventLoop


class _Outcomes:
    """How calls ended: the counters agents and backends share."""

    __slots__ = ("cancelled", "completed", "failed", "timed_out")

    def __init__(self) -> None:
        self.completed = self.failed = self.timed_out = self.cancelled = 0

    def count(self, outcome: Outcome) -> None:
        """Count one call's end (rejections are counted where they happen)."""
        if outcome == "ok":
            self.completed += 1
        elif outcome == "error":
            self.failed += 1
        elif outcome == "timeout":
            self.timed_out += 1
        elif outcome == "cancelled":
            self.cancelled += 1


class AgentRecord(_Outcomes):
    """One agent's budgets and counters, shared by all its handles and backends."""

    __slots__ = (
        "completion_tokens", "name", "prompt_tokens", "rejected", "request_budget",
        "requests", "running", "token_budget", "waiting", "waits",
    )  # fmt: skip

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.token_budget: int | None = None
        self.request_budget: int | None = None
        self.requests = 0  # admitted calls, less those that never reached the model
        self.waiting = self.running = self.rejected = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.waits: deque[float] = deque(maxlen=WAIT_SAMPLES)  # the latest waits, seconds

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-able data (wait quantiles are added by the caller)."""
        tokens_left = None if self.token_budget is None else self.token_budget - self.tokens
        requests_left = None if self.request_budget is None else self.request_budget - self.requests
        return {
            "waiting": self.waiting,
            "running": self.running,
            "requests": self.requests,
            "completed": self.completed,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "token_budget": self.token_budget,
            "tokens_left": None if tokens_left is None else max(0, tokens_left),
            "request_budget": self.request_budget,
            "requests_left": None if requests_left is None else max(0, requests_left),
        }

    def check_budget(self, *, admitting: bool) -> BudgetExceeded | None:
        """The error to raise if a call may not run now, else ``None``."""
        limit = self.request_budget
        if admitting and limit is not None and self.requests >= limit:
            return BudgetExceeded(self.name, "requests", limit, self.requests + 1)
        if self.token_budget is not None and self.tokens >= self.token_budget:
            return BudgetExceeded(self.name, "tokens", self.token_budget, self.tokens)
        return None


class BackendRecord(_Outcomes):
    """A model, its slots and its waiting room."""

    __slots__ = (
        "batches", "batching", "filling", "max_in_flight", "model", "name", "queue",
        "running", "waiting",
    )  # fmt: skip

    def __init__(self, name: str, model: Model, max_in_flight: int, policy: Policy) -> None:
        super().__init__()
        self.name, self.model, self.max_in_flight = name, model, max_in_flight
        self.batching = model.supports_batching
        self.queue: WaitQueue[Ticket] = WaitQueue(policy, is_waiting)
        self.running = 0  # slots in use; a batch uses one
        self.waiting = 0
        self.batches = 0
        self.filling: Batch | None = None  # the batch still taking members, if any

    def snapshot(self) -> dict[str, Any]:
        stats = getattr(getattr(self.model, "cache", None), "stats", None)  # a CachedModel's
        found = {"engine": engine} if (engine := _engine_stats(self.model)) is not None else {}
        return found | {
            "model": self.model.model_id,
            "cache_hits": getattr(stats, "hits", None),
            "cache_misses": getattr(stats, "misses", None),
            "running": self.running,
            "waiting": self.waiting,
            "max_in_flight": self.max_in_flight,
            "completed": self.completed,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "cancelled": self.cancelled,
            "batching": self.batching,
            "batches": self.batches,
        }


def _engine_stats(model: Model) -> dict[str, Any] | None:
    """The batch engine's counters of the embedded model inside a backend stack, if any."""
    for _ in range(16):  # a stack of wrappers, each with ``inner``
        engine_stats = getattr(model, "engine_stats", None)
        if callable(engine_stats):
            found = engine_stats()
            return found if isinstance(found, dict) else None
        inner = getattr(model, "inner", None)
        if not isinstance(inner, Model):
            return None
        model = inner
    return None


class Ticket:
    """One call's place in the scheduler."""

    __slots__ = (
        "agent", "backend", "batch", "batched", "deadline", "enqueued", "expired", "future",
        "key", "loop", "request", "state", "task",
    )  # fmt: skip

    def __init__(  # noqa: PLR0917 - positional: one is made per call
        self,
        agent: AgentRecord,
        backend: BackendRecord,
        request: ModelRequest,
        loop: Loop,
        now: float,
        timeout: float,
        stream: bool,
    ) -> None:
        self.agent, self.backend, self.request, self.loop = agent, backend, request, loop
        self.enqueued, self.deadline = now, now + timeout
        self.batched = backend.batching and not stream
        self.batch: Batch | None = None
        self.state = WAITING
        self.key: Key = (0, 0.0, 0)
        self.task: asyncio.Task[Any] | None = None  # the caller's, while its deadline runs
        self.expired = False  # the deadline passed (and cancelled ``task``)
        # Non-batched: resolved (with None) when the call may run. Batched: resolved with
        # the batch's reply for this request. Either: with the error if it is refused.
        self.future: asyncio.Future[ModelResponse | None] = loop.create_future()


def is_waiting(ticket: Ticket) -> bool:
    return ticket.state == WAITING


class Batch:
    """Requests that run together with one ``abatch`` call, in one slot."""

    __slots__ = ("backend", "full", "members", "task", "wake")

    def __init__(self, backend: BackendRecord) -> None:
        self.backend = backend
        self.members: list[Ticket] = []
        self.full = False  # no more members: run now
        self.wake: asyncio.Future[ModelResponse | None] | None = None
        self.task: asyncio.Task[None] | None = None

    def alive(self) -> list[Ticket]:
        return [m for m in self.members if m.state == GRANTED]


def resolve(future: asyncio.Future[ModelResponse | None], value: object) -> None:
    """Settle a ticket's future with a reply, ``None`` (go ahead) or an error."""
    if future.done():  # its caller gave up (cancelled or timed out) first
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value if isinstance(value, ModelResponse) else None)


def call_in(loop: Loop, here: Loop | None, fn: Callable[..., object], *args: Any) -> bool:
    """Run ``fn(*args)`` in ``loop``: now if it is the running loop, else thread-safely.

    Returns False if ``loop`` is closed (whoever waited in it is gone).
    """
    if loop is here:
        fn(*args)
        return True
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        return False
    return True


def quantile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of sorted values (``None`` if there are none)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
