"""The kernel's LLM scheduler: every agent's model calls in a process go through it.

::

    scheduler = Scheduler({"local": make_model("local:smollm2")}, max_in_flight=4)
    model = scheduler.model_for("planner", token_budget=50_000)  # a Model
    reply = await model.achat("Which way?")

How it works (docs/kernel.md has the long form):

* There is no dispatcher task and no polling. A call puts a ticket in its backend's
  :class:`~llmagentos.kernel.queues.WaitQueue` and awaits the ticket's future. Whoever
  frees a slot (a call that ends, fails or is cancelled) or finds one free (a new
  arrival) pops the next ticket and resolves its future. The call then runs the model
  in the caller's own task, so cancelling the caller cancels the model call and frees
  the slot at once.
* The bookkeeping is plain data under a threading lock, and a ticket is woken in its
  own event loop (``call_soon_threadsafe`` when that is another loop). So a scheduler
  is bound to no loop: async code, sync code (each ``request()`` runs its own
  ``asyncio.run``) and threads with loops of their own can share it.
* On a backend whose model ``supports_batching``, a popped ticket opens a batch; for up
  to ``batch_window`` seconds later arrivals join it, then one task runs
  ``model.abatch`` and resolves each member's future. A batch holds one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from llmagentos.exceptions import ConfigError, ModelError, ModelTimeoutError, UnknownModelError
from llmagentos.kernel.handle import ScheduledModel
from llmagentos.kernel.queues import (
    DONE,
    GRANTED,
    REJECTED,
    RESOLVED,
    WAITING,
    AgentRecord,
    BackendRecord,
    Batch,
    Loop,
    Outcome,
    Policy,
    Ticket,
    call_in,
    quantile,
    resolve,
)
from llmagentos.llm.base import Model
from llmagentos.llm.types import ModelRequest, ModelResponse, Usage
from llmagentos.modules.base import run_sync

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "Scheduler", "UnknownBackendError"]

DEFAULT_MAX_IN_FLIGHT = 4


class UnknownBackendError(UnknownModelError):
    """The scheduler has no backend of this name; ``available`` lists those it has."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.available = list(available)
        listing = ", ".join(repr(n) for n in available) or "none (add one with add_backend())"
        ModelError.__init__(self, f"unknown backend {name!r}; backends: {listing}")
        self.model = name


class Scheduler:
    """Shares model backends among agents: concurrency limits, fairness, budgets, batching.

    Args:
        backends: name -> model; more can be added with :meth:`add_backend`. The first
            one is the default backend of :meth:`model_for`.
        max_in_flight: calls running at once per backend (one number, or per name;
            names not in the mapping get ``DEFAULT_MAX_IN_FLIGHT``).
        policy: order of waiting calls of equal priority: ``fair`` (weighted fair
            queueing by agent) or ``fifo`` (arrival order).
        default_timeout: deadline in seconds of a call whose settings give none. Time
            spent waiting counts.
        batch_size: most requests per ``abatch`` call on a backend that supports it.
        batch_window: seconds a batch waits for more members before it runs.
    """

    def __init__(
        self,
        backends: Mapping[str, Model] | None = None,
        *,
        max_in_flight: int | Mapping[str, int] = DEFAULT_MAX_IN_FLIGHT,
        policy: Policy = "fair",
        default_timeout: float = 120.0,
        batch_size: int = 8,
        batch_window: float = 0.002,
    ) -> None:
        if policy not in ("fair", "fifo"):
            raise ConfigError("policy", f"must be 'fair' or 'fifo', got {policy!r}")
        if not default_timeout > 0:
            raise ConfigError("default_timeout", f"must be > 0 seconds, got {default_timeout!r}")
        if batch_size < 1:
            raise ConfigError("batch_size", f"must be >= 1, got {batch_size!r}")
        if batch_window < 0:
            raise ConfigError("batch_window", f"must be >= 0 seconds, got {batch_window!r}")
        self.policy: Policy = policy
        self.default_timeout = float(default_timeout)
        self.batch_size = batch_size
        self.batch_window = float(batch_window)
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._backends: dict[str, BackendRecord] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._closed = False
        for name, model in (backends or {}).items():
            self.add_backend(name, model)

    # -- configuration --------------------------------------------------------------------

    def add_backend(self, name: str, model: Model, *, max_in_flight: int | None = None) -> None:
        """Serve ``model`` as backend ``name`` with at most ``max_in_flight`` running calls."""
        if max_in_flight is None:
            limits = self._max_in_flight
            max_in_flight = (
                limits.get(name, DEFAULT_MAX_IN_FLIGHT) if isinstance(limits, Mapping) else limits
            )
        if max_in_flight < 1:
            raise ConfigError(f"max_in_flight.{name}", f"must be >= 1, got {max_in_flight!r}")
        with self._lock:
            if name in self._backends:
                raise ConfigError("backend", f"{name!r} is already added")
            self._backends[name] = BackendRecord(name, model, max_in_flight, self.policy)

    def set_max_in_flight(self, name: str, max_in_flight: int) -> None:
        """Let ``max_in_flight`` calls run at once on backend ``name`` from now on (a
        pool of hosts that grew or shrank); waiting calls take any new slots at once."""
        if max_in_flight < 1:
            raise ConfigError(f"max_in_flight.{name}", f"must be >= 1, got {max_in_flight!r}")
        with self._lock:
            found = self._backends.get(name)
            if found is None:
                raise UnknownBackendError(name, list(self._backends))
            found.max_in_flight = max_in_flight
            if found.waiting:
                self._pump(found, None)

    @property
    def backends(self) -> list[str]:
        """Backend names, the default first."""
        return list(self._backends)

    def model_for(
        self,
        agent: str,
        backend: str | None = None,
        *,
        priority: int = 0,
        weight: float = 1.0,
        token_budget: int | None = None,
        request_budget: int | None = None,
    ) -> ScheduledModel:
        """A model for ``agent`` whose calls queue here, on ``backend`` (default: the first).

        Args:
            priority: calls with a higher priority run before any waiting lower one.
            weight: the agent's share under ``fair``: weight 2 gets twice the calls of 1.
            token_budget, request_budget: the agent's limits over all its calls on every
                backend; ``None`` keeps what an earlier call set (initially no limit).

        Raises:
            UnknownBackendError: no such backend; the message lists the backends.
        """
        if not weight > 0:
            raise ConfigError("weight", f"must be > 0, got {weight!r}")
        for field, value in (("token_budget", token_budget), ("request_budget", request_budget)):
            if value is not None and value < 0:
                raise ConfigError(field, f"must be >= 0, got {value!r}")
        with self._lock:
            if backend is None:
                if not self._backends:
                    raise UnknownBackendError("<default>", [])
                backend = next(iter(self._backends))
            found = self._backends.get(backend)
            if found is None:
                raise UnknownBackendError(backend, list(self._backends))
            record = self._agents.get(agent)
            if record is None:
                record = self._agents[agent] = AgentRecord(agent)
            if token_budget is not None:
                record.token_budget = token_budget
            if request_budget is not None:
                record.request_budget = request_budget
        return ScheduledModel(self, record, found, priority=priority, weight=weight)

    # -- the call path (used by ScheduledModel) -------------------------------------------

    def _admit(
        self,
        handle: ScheduledModel,
        request: ModelRequest,
        timeout: float,
        stream: bool,
        loop: Loop,
    ) -> Ticket:
        """Check the budget, queue a ticket and hand out any free slot."""
        agent, backend = handle._agent, handle._backend
        with self._lock:
            if self._closed:
                raise ModelError("the scheduler is closed", model=backend.model.model_id)
            if agent.token_budget is not None or agent.request_budget is not None:
                refused = agent.check_budget(admitting=True)
                if refused is not None:
                    agent.rejected += 1
                    raise refused
            ticket = Ticket(agent, backend, request, loop, time.monotonic(), timeout, stream)
            ticket.key = backend.queue.push(ticket, agent.name, handle.priority, handle.weight)
            agent.requests += 1
            agent.waiting += 1
            backend.waiting += 1
            if backend.running < backend.max_in_flight or backend.filling is not None:
                self._pump(backend, loop)
        return ticket

    def _pump(self, b: BackendRecord, here: Loop | None) -> None:
        """Give free slots to waiting tickets in queue order. The caller holds the lock."""
        while True:
            if b.filling is not None:
                if not self._fill(b, b.filling, here):
                    return
                continue
            if b.running >= b.max_in_flight:
                return
            ticket = self._pop(b, here)
            if ticket is None:
                return
            b.running += 1
            if not ticket.batched:
                self._grant(ticket, here)
                continue
            batch = Batch(b)
            b.batches += 1
            self._join(batch, ticket)
            b.filling = batch
            self._fill(b, batch, here)
            if self.batch_window <= 0 and b.filling is batch:
                b.filling, batch.full = None, True
            self._launch(batch, here)

    def _pop(self, b: BackendRecord, here: Loop | None) -> Ticket | None:
        """The next waiting ticket whose agent still has budget; refuses those without."""
        while (ticket := b.queue.pop()) is not None:
            agent = ticket.agent
            # Its agent's other calls may have used up the tokens while this one waited.
            if agent.token_budget is not None:
                refused = agent.check_budget(admitting=False)
                if refused is not None:
                    self._reject(ticket, refused, here)
                    continue
            return ticket
        return None

    def _take(self, ticket: Ticket) -> None:
        ticket.state = GRANTED
        agent = ticket.agent
        agent.waiting -= 1
        agent.running += 1
        ticket.backend.waiting -= 1
        agent.waits.append(time.monotonic() - ticket.enqueued)

    def _grant(self, ticket: Ticket, here: Loop | None) -> None:
        """Give ``ticket`` its slot (already counted in ``running``) and wake its caller."""
        self._take(ticket)
        future = ticket.future
        if ticket.loop is here:
            if not future.done():
                future.set_result(None)
        elif not call_in(ticket.loop, here, resolve, future, None):  # its loop is closed
            ticket.state = DONE
            ticket.agent.running -= 1
            ticket.backend.running -= 1

    def _reject(self, ticket: Ticket, error: BaseException, here: Loop | None) -> None:
        ticket.state = REJECTED
        agent = ticket.agent
        agent.waiting -= 1
        agent.requests -= 1
        agent.rejected += 1
        ticket.backend.waiting -= 1
        call_in(ticket.loop, here, resolve, ticket.future, error)

    def _finish(self, ticket: Ticket, outcome: Outcome, usage: Usage | None) -> None:
        """The caller is done with ``ticket``: free what it held and count the outcome."""
        agent, b = ticket.agent, ticket.backend
        with self._lock:
            state, ticket.state = ticket.state, DONE
            if state == GRANTED and not ticket.batched:  # the common case
                agent.running -= 1
                b.running -= 1
            elif state == WAITING:  # cancelled or timed out in the queue: it never ran
                agent.waiting -= 1
                agent.requests -= 1
                b.waiting -= 1
            else:
                future = ticket.future
                if future.done() and not future.cancelled():
                    future.exception()  # seen: asyncio must not log it as never retrieved
                if state in (GRANTED, RESOLVED):
                    agent.running -= 1
                    if state == GRANTED and ticket.batch is not None:
                        self._leave_batch(ticket.batch, ticket.loop)
            if outcome == "ok":
                agent.completed += 1
                b.completed += 1
            else:
                agent.count(outcome)
                b.count(outcome)
            if usage is not None:
                agent.prompt_tokens += usage.prompt_tokens
                agent.completion_tokens += usage.completion_tokens
            if b.waiting or b.filling is not None:
                self._pump(b, ticket.loop)

    # -- batches --------------------------------------------------------------------------

    def _join(self, batch: Batch, ticket: Ticket) -> None:
        self._take(ticket)
        ticket.batch = batch
        batch.members.append(ticket)

    def _fill(self, b: BackendRecord, batch: Batch, here: Loop | None) -> bool:
        """Move waiting tickets into the filling ``batch``; True once it is full."""
        while len(batch.members) < self.batch_size:
            ticket = self._pop(b, here)
            if ticket is None:
                return False
            if not ticket.batched:  # a stream needs a slot of its own
                if b.running >= b.max_in_flight:
                    b.queue.restore(ticket, ticket.key)
                    return False
                b.running += 1
                self._grant(ticket, here)
                continue
            self._join(batch, ticket)
        b.filling, batch.full = None, True
        if batch.wake is not None:  # its task is already waiting for members
            call_in(batch.wake.get_loop(), here, resolve, batch.wake, None)
        return True

    def _launch(self, batch: Batch, here: Loop | None) -> None:
        """Start the batch's task in the loop of a member (one whose caller is waiting)."""
        for loop in dict.fromkeys(m.loop for m in batch.members):
            # Always on a later turn of the loop, never inline: we hold the lock, and an
            # eager task factory would run the batch's first step right inside create_task.
            try:
                if loop is here:
                    loop.call_soon(self._start_batch, batch, loop)
                else:
                    loop.call_soon_threadsafe(self._start_batch, batch, loop)
            except RuntimeError:  # that loop is closed
                continue
            return
        # Every member's loop is closed: nobody is left to answer.
        b = batch.backend
        b.running -= 1
        if b.filling is batch:
            b.filling = None
        for member in batch.members:
            member.state = DONE
            member.agent.running -= 1

    def _start_batch(self, batch: Batch, loop: Loop) -> None:
        task = loop.create_task(self._run_batch(batch))
        batch.task = task
        # A done callback, not a finally: it also runs if the task is cancelled unstarted.
        task.add_done_callback(functools.partial(self._batch_done, batch))

    def _leave_batch(self, batch: Batch, here: Loop | None) -> None:
        """A member gave up; if it was the last one, stop the batch (frees its slot)."""
        task = batch.task
        if task is not None and not batch.alive():
            call_in(task.get_loop(), here, task.cancel)

    async def _run_batch(self, batch: Batch) -> None:
        b, loop = batch.backend, asyncio.get_running_loop()
        if not batch.full and self.batch_window > 0:
            wake: asyncio.Future[ModelResponse | None] = loop.create_future()
            with self._lock:
                batch.wake = wake
                waiting = not batch.full
            if waiting:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.batch_window):
                        await wake
        with self._lock:
            if b.filling is batch:
                b.filling, batch.full = None, True
            members = batch.alive()
            self._pump(b, loop)  # streams may have waited for the batch to close
        if not members:
            return
        remaining = max(m.deadline for m in members) - time.monotonic()
        results: list[ModelResponse | BaseException]
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                results = await _call_batch(b.model, [m.request for m in members])
        except TimeoutError:
            results = [
                ModelTimeoutError(
                    "deadline passed while running in a batch", model=b.model.model_id
                )
                for _ in members
            ]
        with self._lock:
            for member, result in zip(members, results, strict=True):
                if member.state == GRANTED:
                    member.state = RESOLVED
                    call_in(member.loop, loop, resolve, member.future, result)

    def _batch_done(self, batch: Batch, task: asyncio.Task[None]) -> None:
        b, here = batch.backend, task.get_loop()
        with self._lock:
            b.running -= 1
            if b.filling is batch:
                b.filling = None
            error = None if task.cancelled() else task.exception()
            for member in batch.alive():
                if error is not None:
                    member.state = RESOLVED
                    call_in(member.loop, here, resolve, member.future, error)
                else:
                    # Cancelled from outside (its loop is shutting down) while others still
                    # wait for it: they go back to their place in the queue.
                    member.state = WAITING
                    member.batch = None
                    member.agent.running -= 1
                    member.agent.waiting += 1
                    b.waiting += 1
                    b.queue.restore(member, member.key)
            self._pump(b, here)

    # -- observing and closing ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot for dashboards: per backend and per agent."""
        with self._lock:
            backends = {name: b.snapshot() for name, b in self._backends.items()}
            agents = {name: a.snapshot() for name, a in self._agents.items()}
            waits = {name: list(a.waits) for name, a in self._agents.items()}
            closed = self._closed
        for name, recent in waits.items():  # sorted outside the lock
            recent.sort()
            agents[name] |= {
                "wait_mean_s": sum(recent) / len(recent) if recent else None,
                "wait_p50_s": quantile(recent, 0.50),
                "wait_p99_s": quantile(recent, 0.99),
            }
        return {"policy": self.policy, "closed": closed, "backends": backends, "agents": agents}

    async def aclose(self) -> None:
        """Refuse new calls, fail the waiting ones, then close the backend models.

        Calls already running end as their model does once it is closed.
        """
        here = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for b in self._backends.values():
                while (ticket := b.queue.pop()) is not None:
                    error = ModelError("the scheduler was closed", model=b.model.model_id)
                    self._reject(ticket, error, here)
            models = [b.model for b in self._backends.values()]
        for model in models:
            await model.aclose()

    def close(self) -> None:
        """Sync twin of :meth:`aclose`."""
        run_sync(self.aclose())

    async def __aenter__(self) -> Scheduler:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Scheduler(backends={self.backends!r}, policy={self.policy!r})"


async def _call_batch(
    model: Model, requests: list[ModelRequest]
) -> list[ModelResponse | BaseException]:
    """One reply or error per request; a failing batch is retried one request at a time."""
    if len(requests) == 1:
        try:
            return [await model.arequest(requests[0])]
        except Exception as err:
            return [err]
    try:
        responses = await model.abatch(requests)
        if len(responses) != len(requests):
            raise ModelError(
                f"abatch returned {len(responses)} replies for {len(requests)} requests",
                model=model.model_id,
            )
        return list(responses)
    except Exception:
        # One bad request must fail only its own call, not its neighbours in the batch.
        results: list[ModelResponse | BaseException] = []
        for request in requests:
            try:
                results.append(await model.arequest(request))
            except Exception as err:
                results.append(err)
        return results
