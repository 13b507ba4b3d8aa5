"""An agent's episodes on Ray workers: ``agent.run(n, seed=s, backend="ray")``.

The agent is pickled once (cloudpickle) and put in Ray's object store. Evaluation runs
chunks of episodes as Ray tasks; training runs them on actors that each hold one copy
of the agent (see :mod:`~llmagentos.distributed.workers`). Episode ``i`` is seeded with
``seed + i`` whichever worker runs it (``reseed="each"``), so it does not depend on
which worker ran which episodes before it:

* **evaluation** (``train=False``): the learned state is frozen, so each episode's
  result is exactly the serial ``agent.run(n, seed=s, reseed="each", train=False)``'s,
  for any number of workers;
* **training** (``train=True``): each worker learns on its own copy, and every
  ``sync_every`` episodes per worker the copies' learning is merged (see
  :mod:`~llmagentos.distributed.merge`) and sent back to all of them; at the end the
  merged Q-tables and counters are loaded into ``agent`` itself. Parameter averaging
  is not the serial run (a serial learner has learned from every earlier episode), but
  it is deterministic: the same seeds and worker count give the same tables. Only
  agents whose learning lives in Q-tables can be trained this way; others get a
  :class:`~llmagentos.exceptions.ConfigError` before anything is sent.

``on_episode`` is called in this process as episodes finish (the order they finish
in); the returned :class:`~llmagentos.types.RunResult` lists them in episode order.
Step listeners (``Agent(on_step=...)``) stay in this process and do not run on workers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmagentos.distributed.cluster import connect
from llmagentos.distributed.merge import (
    LearnedState,
    find_q_tables,
    learned_state,
    load_learned,
    merge_learned,
)
from llmagentos.distributed.pickling import check_serializable
from llmagentos.distributed.workers import (
    WorkerLost,
    end_workers,
    evaluate_chunk,
    lost_errors,
    new_worker,
)
from llmagentos.exceptions import ConfigError
from llmagentos.modules.learning import LearningModule
from llmagentos.telemetry.handoff import TraceHandoff, handoff
from llmagentos.telemetry.spans import span
from llmagentos.types import EpisodeResult, RunResult

if TYPE_CHECKING:
    from llmagentos.agent import Agent

__all__ = ["WorkerLost", "check_trainable", "run_on_ray"]

_CHUNKS_PER_WORKER = 8  # evaluation: enough chunks for a live progress bar


def check_trainable(agent: Agent) -> None:
    """Training on workers merges Q-tables: refuse an agent that learns anything else."""
    learning = agent.learning_module
    if isinstance(learning, LearningModule) and not learning._overrides:
        optimizer = getattr(learning, "optimizer", None)
        if optimizer is None or find_q_tables(agent):
            return
    raise ConfigError(
        "backend",
        f"training on Ray merges Q-tables, and {type(learning).__name__} learns something "
        "else; train it with the local backend, or evaluate on Ray with train=False",
    )


def _payload(agent: Agent) -> bytes:
    """The agent pickled for the workers, without its step listeners; each module is
    checked on its own first, so an error names the module."""
    for kind, module in zip(
        ("perception", "planning", "execution", "learning"), agent.modules, strict=True
    ):
        check_serializable(module, f"the {kind} module {type(module).__name__}", path=kind)
    listeners, agent.listeners = agent.listeners, []
    try:
        return check_serializable(agent, f"agent {agent.name!r}", path="agent")
    finally:
        agent.listeners = listeners


def run_on_ray(
    agent: Agent,
    episodes: int,
    *,
    seed: int | None,
    max_steps: int | None,
    training: bool,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    workers: int | None = None,
    address: str | None = None,
    sync_every: int | None = None,
    max_replacements: int = 3,
) -> RunResult:
    """Run ``episodes`` episodes of ``agent`` on Ray workers (module docstring).

    Args:
        workers: actors to start (default: the cluster's CPUs, at most one per episode).
        address: the cluster (see :func:`~llmagentos.distributed.cluster.connect`).
        sync_every: training: episodes each worker runs between merges (default: about
            ten merges in the run).
        max_replacements: dead workers to replace before giving up (:class:`WorkerLost`).
    """
    if workers is not None and workers < 1:
        raise ConfigError("workers", f"must be >= 1 (got {workers})")
    if sync_every is not None and sync_every < 1:
        raise ConfigError("sync_every", f"must be >= 1 (got {sync_every})")
    if training:
        check_trainable(agent)
    payload = _payload(agent)  # before any connection or task: fail fast
    result = RunResult()
    if episodes == 0:
        return result
    ray = connect(address)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    count = min(workers or max(1, int(cpus)), episodes)
    with span(f"rollout {agent.name}", _rollout_attributes(episodes, count, training)):
        rollout = _Rollout(
            ray=ray,
            payload=ray.put(payload),
            training=training,
            seed=seed,
            max_steps=max_steps,
            base=agent.episode + 1,
            on_episode=on_episode,
            max_replacements=max_replacements,
            cpus_each=min(1.0, cpus / count),
            trace=handoff(),
        )
        try:
            if training:
                rollout.start(count)
                rollout.train(agent, episodes, sync_every)
            else:
                rollout.evaluate(episodes, count)
        finally:
            rollout.stop()
    result.episodes.extend(rollout.done[i] for i in range(episodes))
    result.workers_replaced = rollout.replaced
    agent.episode = rollout.base + episodes - 1
    return result


def _rollout_attributes(episodes: int, workers: int, training: bool) -> dict[str, Any]:
    return {
        "llmagentos.backend": "ray",
        "llmagentos.episode.count": episodes,
        "llmagentos.workers": workers,
        "llmagentos.training": training,
    }


@dataclass(frozen=True, slots=True)
class _Chunk:
    slot: int
    first: int
    stop: int


@dataclass
class _Rollout:
    """One run's workers and bookkeeping: which episodes are done, in which order.

    A worker that dies (killed, its process gone, its node lost) is replaced by a new
    one, which gets what the dead one started from (the agent, and in training the
    round's merged state) and runs the dead one's chunk again from its start. Episodes
    are seeded on their own and recorded by index, so the rerun gives the same
    episodes and none is lost or counted twice.
    """

    ray: Any
    payload: Any
    training: bool
    seed: int | None
    max_steps: int | None
    base: int
    """The number of the run's first episode (the agent's next)."""
    on_episode: Callable[[EpisodeResult], None] | None
    max_replacements: int
    cpus_each: float
    trace: TraceHandoff | None = None
    """The driver's span and telemetry settings, for the workers' spans."""
    actors: list[Any] = field(default_factory=list)
    done: dict[int, EpisodeResult] = field(default_factory=dict)
    replaced: int = 0
    round_state: LearnedState | None = None
    """Training: what every worker started the current round from."""

    def _new_actor(self) -> Any:
        return new_worker(self.ray, self.payload, self.training, cpus=self.cpus_each)

    def start(self, count: int) -> None:
        self.actors = [self._new_actor() for _ in range(count)]

    def stop(self) -> None:
        end_workers(self.ray, self.actors)

    def _count_replacement(self, error: BaseException) -> None:
        self.replaced += 1
        if self.replaced > self.max_replacements:
            raise WorkerLost(self.replaced - 1, error) from error

    def _record(self, chunk: _Chunk, batch: list[EpisodeResult]) -> None:
        for index, episode in enumerate(batch, start=chunk.first):
            if index in self.done:
                continue  # a chunk run again: its episodes were counted already
            self.done[index] = episode
            if self.on_episode is not None:
                self.on_episode(episode)

    def _replace(self, slot: int, error: BaseException) -> None:
        self._count_replacement(error)
        with contextlib.suppress(Exception):
            self.ray.kill(self.actors[slot])
        self.actors[slot] = self._new_actor()
        if self.round_state is not None:
            self.ray.get(self.actors[slot].load.remote(self.round_state))

    def _seeds(self, chunk: _Chunk) -> list[int | None]:
        return [
            None if self.seed is None else self.seed + i for i in range(chunk.first, chunk.stop)
        ]

    def _submit(self, chunk: _Chunk) -> Any:
        seeds = self._seeds(chunk)
        actor = self.actors[chunk.slot]
        return actor.run.remote(chunk.first, seeds, self.max_steps, self.base, self.trace)

    def _wait(self, chunks: list[_Chunk]) -> None:
        """Run ``chunks``; record each one's episodes as it completes."""
        lost = self.ray.exceptions.RayActorError
        pending = {self._submit(chunk): chunk for chunk in chunks}
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            for ref in ready:
                chunk = pending.pop(ref)
                try:
                    batch = self.ray.get(ref)
                except lost as err:
                    self._replace(chunk.slot, err)
                    # This chunk and the dead worker's queued ones go to its replacement.
                    again = [chunk] + [
                        pending.pop(r) for r, c in list(pending.items()) if c.slot == chunk.slot
                    ]
                    pending.update({self._submit(c): c for c in again})
                    continue
                self._record(chunk, batch)

    def evaluate(self, episodes: int, workers: int) -> None:
        """Chunks as tasks, at most ``workers`` at a time; each episode stands alone, so a
        chunk whose worker was lost is simply run again."""
        size = max(1, math.ceil(episodes / (workers * _CHUNKS_PER_WORKER)))
        todo = [_Chunk(0, first, min(first + size, episodes)) for first in range(0, episodes, size)]
        todo.reverse()
        task = self.ray.remote(num_cpus=self.cpus_each, max_retries=0)(evaluate_chunk)
        lost = lost_errors(self.ray)
        pending: dict[Any, _Chunk] = {}

        def submit(chunk: _Chunk) -> None:
            seeds = self._seeds(chunk)
            ref = task.remote(
                self.payload, chunk.first, seeds, self.max_steps, self.base, self.trace
            )
            pending[ref] = chunk

        while todo or pending:
            while todo and len(pending) < workers:
                submit(todo.pop())
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            for ref in ready:
                chunk = pending.pop(ref)
                try:
                    batch = self.ray.get(ref)
                except lost as err:
                    self._count_replacement(err)
                    todo.append(chunk)
                    continue
                self._record(chunk, batch)

    def train(self, agent: Agent, episodes: int, sync_every: int | None) -> None:
        """Rounds of ``sync_every`` episodes per worker, merged after each round."""
        size = sync_every or max(1, math.ceil(episodes / (len(self.actors) * 10)))
        self.round_state = learned_state(agent)
        first = 0
        while first < episodes:
            chunks = []
            for slot in range(len(self.actors)):
                if first >= episodes:
                    break
                chunks.append(_Chunk(slot, first, min(first + size, episodes)))
                first = chunks[-1].stop
            self._wait(chunks)
            copies = [self._learned_after(chunk) for chunk in chunks]
            self.round_state = merge_learned(self.round_state, copies)
            if first < episodes:
                self._load_everywhere()
        load_learned(agent, self.round_state)

    def _learned_after(self, chunk: _Chunk) -> LearnedState:
        """What the worker of ``chunk`` learned; if it died since, its replacement runs
        the chunk again from the round's start (the same episodes, not counted again)."""
        while True:
            try:
                learned: LearnedState = self.ray.get(self.actors[chunk.slot].learned.remote())
                return learned
            except self.ray.exceptions.RayActorError as err:
                self._replace(chunk.slot, err)
                self._wait([chunk])

    def _load_everywhere(self) -> None:
        """Every worker starts the next round from the merged state."""
        shared = self.ray.put(self.round_state)
        for slot, handle in enumerate(self.actors):
            try:
                self.ray.get(handle.load.remote(shared))
            except self.ray.exceptions.RayActorError as err:
                self._replace(slot, err)  # the replacement loads the merged state
