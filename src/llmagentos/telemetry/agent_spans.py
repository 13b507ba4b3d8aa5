"""Episode and step spans: ``invoke_agent {name}`` per episode, ``step`` per step.

The agent's own phases (``perceive``, ``plan``, ``execute``, ``learn``) open their spans
inside each step (see :mod:`llmagentos.agent`); model calls, tool calls and remote
hops made by a module nest under the phase that made them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from llmagentos.telemetry.spans import set_attributes, span
from llmagentos.telemetry.state import TELEMETRY

if TYPE_CHECKING:
    from llmagentos.episodes import EpisodeRunner
    from llmagentos.types import EpisodeResult

__all__ = ["note_decision", "traced_aepisode", "traced_episode"]


def note_decision(planned: Any, acted: tuple[Any, ...] | None) -> None:
    """The plan span's attributes: the action, and the decision's reason and scores."""
    if acted is None:
        return
    decision = acted[3]
    set_attributes(
        planned,
        {
            "llmagentos.action": acted[2],
            "llmagentos.reason": None if decision is None else decision.reason,
            "llmagentos.scores": None if decision is None else decision.scores,
        },
    )


def _episode_attributes(agent: EpisodeRunner, seed: int | None) -> dict[str, Any]:
    name = getattr(agent, "name", "agent")
    return {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": name,
        "llmagentos.seed": seed,
        "llmagentos.training": agent.training,
    }


def _stepped(current: Any, agent: EpisodeRunner) -> None:
    record = agent.last_record
    if current is None or record is None:
        return
    set_attributes(
        current,
        {
            "llmagentos.episode": record.episode,
            "llmagentos.step": record.step,
            "llmagentos.action": record.action,
            "llmagentos.reason": record.reason,
            "llmagentos.reward": record.reward,
            "llmagentos.terminated": record.terminated,
            "llmagentos.truncated": record.truncated,
        },
    )


def _finished(current: Any, agent: EpisodeRunner, result: EpisodeResult) -> None:
    set_attributes(
        current,
        {
            "llmagentos.episode": result.episode,
            "llmagentos.return": result.total_reward,
            "llmagentos.length": result.length,
            "llmagentos.terminated": result.terminated,
            "llmagentos.truncated": result.truncated,
            "llmagentos.success": result.success,
        },
    )
    instruments = TELEMETRY.instruments
    if instruments is not None:
        name = getattr(agent, "name", "agent")
        instruments.episode(name, result.total_reward, training=result.training)


@contextlib.contextmanager
def _phases_traced(agent: EpisodeRunner) -> Iterator[None]:
    """The agent opens a span per phase for the episode (its hot path stays untouched)."""
    toggle = getattr(agent, "_trace_phases", None)
    if toggle is None:
        yield
        return
    toggle(True)
    try:
        yield
    finally:
        toggle(False)


def traced_episode(agent: EpisodeRunner, seed: int | None, max_steps: int | None) -> EpisodeResult:
    """:meth:`EpisodeRunner.run_episode` with spans."""
    name = getattr(agent, "name", "agent")
    started = time.perf_counter()
    with (
        span(f"invoke_agent {name}", _episode_attributes(agent, seed)) as episode,
        _phases_traced(agent),
    ):
        with span("reset"):
            observation = agent.reset(seed=seed)
        limit = -1 if max_steps is None else max_steps
        while not agent._blocked:
            if agent.step_index == limit:
                agent._cut()
                break
            with span("step") as current:
                observation, _ = agent.step(agent.act(observation))
                _stepped(current, agent)
        result = agent._episode_result(seed, started)
        _finished(episode, agent, result)
        return result


async def traced_aepisode(
    agent: EpisodeRunner, seed: int | None, max_steps: int | None
) -> EpisodeResult:
    """:meth:`EpisodeRunner.arun_episode` with spans."""
    name = getattr(agent, "name", "agent")
    started = time.perf_counter()
    with (
        span(f"invoke_agent {name}", _episode_attributes(agent, seed)) as episode,
        _phases_traced(agent),
    ):
        with span("reset"):
            observation = await agent.areset(seed=seed)
        limit = -1 if max_steps is None else max_steps
        while not agent._blocked:
            if agent.step_index == limit:
                agent._cut()
                break
            with span("step") as current:
                observation, _ = await agent.astep(await agent.aact(observation))
                _stepped(current, agent)
        result = agent._episode_result(seed, started)
        _finished(episode, agent, result)
        return result
