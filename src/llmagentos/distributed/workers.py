"""What runs episodes on Ray: tasks for evaluation, actors for training.

* Evaluation is stateless (the agent is frozen): each chunk of episodes is a task that
  unpickles the agent and runs them. Ray reuses its worker processes from task to task
  and run to run, so a run costs no process start-up.
* Training keeps state between rounds: each worker is an actor holding one agent copy
  (one CPU while it lives). A run starts its actors and ends them when it is done, so
  an idle run holds no CPU the cluster's other work could use.

Asked for more workers than the cluster has CPUs, a run gives each a share of a CPU
(4 workers on 2 CPUs: half each), so that all of them start: whole CPUs would leave
the extra actors waiting for CPUs the others hold until the run ends.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmagentos.distributed.cluster_kernel import route_here
from llmagentos.distributed.merge import LearnedState, learned_state, load_learned
from llmagentos.exceptions import LLMAgentOSError
from llmagentos.telemetry.handoff import TraceHandoff, joined
from llmagentos.telemetry.spans import span
from llmagentos.types import EpisodeResult

if TYPE_CHECKING:
    from llmagentos.agent import Agent

__all__ = [
    "NAME_PREFIX",
    "EpisodeWorker",
    "WorkerLost",
    "end_workers",
    "evaluate_chunk",
    "lost_errors",
    "new_worker",
]

NAME_PREFIX = "llmagentos-episodes-"


class WorkerLost(LLMAgentOSError):
    """Workers kept dying: ``replaced`` were replaced, and then one more was lost."""

    def __init__(self, replaced: int, error: BaseException) -> None:
        self.replaced = replaced
        super().__init__(f"a Ray worker died after {replaced} were replaced: {error}")


class EpisodeWorker:
    """A Ray actor's state: one copy of the agent, running the episodes it is given."""

    def __init__(self, payload: bytes, training: bool) -> None:
        self.agent: Agent = self._unpack(payload, training)

    @staticmethod
    def _unpack(payload: bytes, training: bool) -> Agent:
        route_here()  # the agent's model handles are made again on the cluster's kernel
        agent: Agent = pickle.loads(payload)
        agent.train(training)
        return agent

    def run(
        self,
        first: int,
        seeds: Sequence[int | None],
        max_steps: int | None,
        base: int,
        trace: TraceHandoff | None = None,
    ) -> list[EpisodeResult]:
        """Episodes ``first, first + 1, ...``, numbered as the serial run numbers them;
        their spans in the driver's trace when it handed one over."""
        results = []
        with joined(trace), span("run_episodes", _chunk_attributes(first, seeds, base)):
            for offset, seed in enumerate(seeds):
                self.agent.episode = base + first + offset - 1  # reset() moves it on by one
                results.append(self.agent.run_episode(seed=seed, max_steps=max_steps))
        return results

    def learned(self) -> LearnedState:
        return learned_state(self.agent)

    def load(self, state: LearnedState) -> bool:
        load_learned(self.agent, state)
        return True

    def pid(self) -> int:
        """This worker's process."""
        return os.getpid()


def _chunk_attributes(first: int, seeds: Sequence[int | None], base: int) -> dict[str, Any]:
    return {
        "llmagentos.episode.first": base + first,
        "llmagentos.episode.count": len(seeds),
        "llmagentos.worker.pid": os.getpid(),
    }


def evaluate_chunk(  # noqa: PLR0917 - a Ray task's arguments are positional
    payload: bytes,
    first: int,
    seeds: Sequence[int | None],
    max_steps: int | None,
    base: int,
    trace: TraceHandoff | None = None,
) -> list[EpisodeResult]:
    """A Ray task: evaluation episodes of the agent in ``payload`` (frozen, so any worker
    process will do, and Ray keeps its processes warm between runs)."""
    return EpisodeWorker(payload, False).run(first, seeds, max_steps, base, trace)


def lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """The errors that mean the work was lost with its worker, not that it failed."""
    names = ("WorkerCrashedError", "TaskCancelledError", "NodeDiedError", "ObjectLostError")
    return tuple(getattr(ray.exceptions, name) for name in names if hasattr(ray.exceptions, name))


def new_worker(ray: Any, payload: Any, training: bool, *, cpus: float = 1.0) -> Any:
    """A new actor holding ``payload``'s agent (``cpus`` while it lives; never restarted
    by Ray: a dead one is replaced by the run, which knows what to run again)."""
    actor = ray.remote(num_cpus=cpus, max_restarts=0)(EpisodeWorker)
    name = f"{NAME_PREFIX}{uuid.uuid4().hex[:12]}"
    return actor.options(name=name).remote(payload, training)


def end_workers(ray: Any, actors: Sequence[Any]) -> None:
    """End a run's actors: each holds a CPU, which other work on the cluster needs."""
    for handle in actors:
        with contextlib.suppress(Exception):
            ray.kill(handle)
