"""What an agent holds: a Model whose calls wait their turn in a :class:`Scheduler`."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
import weakref
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

from llmagentos.exceptions import ModelError, ModelTimeoutError
from llmagentos.kernel.queues import (
    REJECTED,
    WAITING,
    AgentRecord,
    BackendRecord,
    Loop,
    Outcome,
    Ticket,
)
from llmagentos.llm.base import WrapperModel
from llmagentos.llm.types import ModelRequest, ModelResponse, StreamEvent, Usage
from llmagentos.telemetry.state import TELEMETRY

if TYPE_CHECKING:
    from llmagentos.kernel.scheduler import Scheduler

__all__ = ["DeadlineWatch", "ScheduledModel", "deadlines"]


class DeadlineWatch:
    """The deadlines of one event loop's calls, on a single timer.

    ``asyncio.timeout`` arms a timer per call: a push onto the loop's heap with
    Python-level comparisons, and a cancelled handle left behind. Under load that is a
    large share of the scheduler's cost per call, so the calls' deadlines live here as
    ``(when, n, ticket)`` tuples and one timer is armed for the earliest. Expiry cancels
    the ticket's task, which turns the ``CancelledError`` into a timeout, as
    ``asyncio.timeout`` does. Used only from its loop's thread.
    """

    __slots__ = ("_count", "_dead", "_heap", "_timer", "_when")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Ticket]] = []
        self._count = itertools.count()
        self._dead = 0  # finished entries still in the heap
        self._timer: asyncio.TimerHandle | None = None
        self._when = math.inf

    def add(self, ticket: Ticket, task: asyncio.Task[Any], loop: Loop, when: float) -> None:
        """Cancel ``task`` at loop time ``when`` unless :meth:`remove` comes first."""
        ticket.task = task
        heapq.heappush(self._heap, (when, next(self._count), ticket))
        if when < self._when:
            self._arm(loop, when)

    def remove(self, ticket: Ticket) -> None:
        """The call is over: its deadline no longer applies."""
        ticket.task = None
        if not ticket.expired:
            self._dead += 1
            # Calls end long before their deadlines: drop finished ones in bulk.
            if self._dead > 64 and 2 * self._dead > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2].task is not None]
                heapq.heapify(self._heap)
                self._dead = 0

    def _arm(self, loop: Loop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._when = when
        self._timer = loop.call_at(when, self._fire, loop)

    def _fire(self, loop: Loop) -> None:
        self._timer, self._when = None, math.inf
        heap, now = self._heap, loop.time()
        while heap and (heap[0][0] <= now or heap[0][2].task is None):
            ticket = heapq.heappop(heap)[2]
            task = ticket.task
            if task is None:
                self._dead -= 1
                continue
            ticket.expired = True
            task.cancel()
        if heap:
            self._arm(loop, heap[0][0])


_local = threading.local()


def deadlines(loop: Loop) -> DeadlineWatch:
    """The deadline watch of ``loop`` (cached per thread: a thread runs one loop at a time)."""
    cached: tuple[weakref.ref[Loop], DeadlineWatch] | None = getattr(_local, "watch", None)
    if cached is not None and cached[0]() is loop:
        return cached[1]
    watch = DeadlineWatch()
    _local.watch = (weakref.ref(loop), watch)
    return watch


class ScheduledModel(WrapperModel):
    """An agent's model on a scheduler backend: its calls wait their turn there.

    ``model_id`` is the backend model's. ``aclose`` does nothing: the scheduler owns the
    backend. Get one from :meth:`Scheduler.model_for`.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        agent: AgentRecord,
        backend: BackendRecord,
        *,
        priority: int = 0,
        weight: float = 1.0,
    ) -> None:
        super().__init__(backend.model)
        self.scheduler = scheduler
        self.agent = agent.name
        self.backend = backend.name
        self.priority = priority
        self.weight = weight
        self._agent = agent
        self._backend = backend

    def _timeout_error(self, timeout: float, *, waited: bool) -> ModelTimeoutError:
        where = "waiting for a slot" if waited else "running"
        return ModelTimeoutError(
            f"no reply within the {timeout:g} s deadline (it passed while {where}; "
            f"agent {self.agent!r}, backend {self.backend!r})",
            model=self.model_id,
        )

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        if TELEMETRY.on:
            from llmagentos.telemetry.genai import traced_model_call

            return await traced_model_call(
                self.model_id, self.agent, self.backend, request, self._arequest
            )
        return await self._arequest(request)

    async def _arequest(self, request: ModelRequest) -> ModelResponse:
        scheduler = self.scheduler
        timeout = request.settings.timeout or scheduler.default_timeout
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a scheduled model call must run inside an asyncio task")
        loop = asyncio.get_running_loop()
        watch = deadlines(loop)
        cancelling = task.cancelling()
        ticket = scheduler._admit(self, request, timeout, False, loop)
        outcome: Outcome = "cancelled"
        response: ModelResponse | None = None
        try:
            watch.add(ticket, task, loop, loop.time() + timeout)
            try:
                response = await ticket.future
                if TELEMETRY.on:
                    from llmagentos.telemetry.genai import queue_waited

                    queue_waited(self.backend, self.agent, ticket.enqueued)
                if not ticket.batched:
                    response = await self.inner.arequest(request)
            except asyncio.CancelledError:
                # As asyncio.timeout: a timeout only if nobody else cancelled us too.
                if ticket.expired and task.uncancel() <= cancelling:
                    outcome = "timeout"
                    waited = ticket.state == WAITING
                    raise self._timeout_error(timeout, waited=waited) from None
                raise
            except Exception:
                outcome = "rejected" if ticket.state == REJECTED else "error"
                raise
            if response is None:  # a batch always resolves with a reply or an error
                raise ModelError("the scheduler lost a batched reply", model=self.model_id)
            outcome = "ok"
            return response
        finally:
            watch.remove(ticket)
            scheduler._finish(ticket, outcome, None if response is None else response.usage)

    async def astream(self, request: ModelRequest) -> AsyncGenerator[StreamEvent, None]:
        """Stream through the scheduler: the call holds its slot until the stream ends.

        Close an abandoned stream (``contextlib.aclosing``) to free the slot at once;
        otherwise it is freed when the generator is garbage-collected.
        """
        scheduler = self.scheduler
        timeout = request.settings.timeout or scheduler.default_timeout
        loop = asyncio.get_running_loop()
        ticket = scheduler._admit(self, request, timeout, True, loop)
        deadline = loop.time() + timeout
        outcome: Outcome = "cancelled"
        usage: Usage | None = None
        waited = True
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await ticket.future
                waited = False
                events = self.inner.astream(request)
                try:
                    while True:
                        # The deadline covers each step, never a yield: the consumer's
                        # own awaits between events must not be cancelled by it.
                        async with asyncio.timeout_at(deadline):
                            try:
                                event = await anext(events)
                            except StopAsyncIteration:
                                break
                        if event.usage is not None:
                            usage = event.usage
                        yield event
                finally:
                    aclose = getattr(events, "aclose", None)
                    if aclose is not None:
                        await aclose()
            except TimeoutError as err:
                if loop.time() < deadline:
                    outcome = "error"
                    raise
                outcome = "timeout"
                raise self._timeout_error(timeout, waited=waited) from err
            except Exception:
                outcome = "rejected" if ticket.state == REJECTED else "error"
                raise
            outcome = "ok"
        finally:
            scheduler._finish(ticket, outcome, usage)

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        """Each request goes through the scheduler (which batches them if it can)."""
        results = await asyncio.gather(
            *(self.arequest(r) for r in requests), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if isinstance(r, ModelResponse)]

    async def aclose(self) -> None:
        """Nothing to release: the backend is the scheduler's (close it with the scheduler)."""

    def __repr__(self) -> str:
        return (
            f"ScheduledModel(agent={self.agent!r}, backend={self.backend!r}, "
            f"model={self.model_id!r})"
        )
