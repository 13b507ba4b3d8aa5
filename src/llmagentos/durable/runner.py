"""Durable runs: every step logged to the journal before the next; crash, then resume.

Resuming replays the run from its start: the agent is rebuilt with the same seeds and
recomputes its steps, while every side effect (tool call, model call) that completed
before the crash returns its recorded result instead of running again. Each replayed
step is checked against the journal, so a non-deterministic agent fails loudly
(:class:`~llmagentos.exceptions.ResumeMismatch`) instead of drifting. When the replay
reaches the last recorded step, the run goes on live. This is the event-sourcing
design of durable-execution engines, scaled down to one SQLite file and a steps log.

Pure computation (a Gymnasium environment's ``step``, a Q-table update) is simply
redone; anything that touches the world should go through a tool (a
:class:`~llmagentos.tools.gate.ToolGate`) so it is made at most once, and every model
call through a :class:`~llmagentos.durable.model.DurableModel` (models made from an id
by the kernel are) so a replayed step gets the reply the model gave.

Every recorded call carries the digest of what it was; a replay whose call at a
position differs stops with ``ResumeMismatch`` instead of being handed the old result
(or the old approval). A journal whose rows do not match their digests is refused
before the run writes anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmagentos._blocking import run_blocking
from llmagentos._json import jsonable
from llmagentos.agent import Agent
from llmagentos.durable.digest import value_digest
from llmagentos.durable.journal import Approval, Journal
from llmagentos.durable.records import step_packer
from llmagentos.durable.scope import StepScope, scope_active
from llmagentos.durable.steplog import check_durability
from llmagentos.exceptions import (
    ApprovalPending,
    BudgetExceeded,
    ConfigError,
    JournalError,
    ResumeMismatch,
)
from llmagentos.safety.budget import Budget, BudgetMeter
from llmagentos.types import EpisodeResult, RunResult

__all__ = ["DurableResult", "DurableRunner", "run_durable"]

_perf = time.perf_counter
# What a replayed step must reproduce exactly; anything else may differ (timings).
_CHECKED = ("episode", "step", "action", "reward", "terminated", "truncated")
_ACTIVE_FLUSH_SECONDS = 2.0


def _check_run_args(episodes: int, max_steps: int | None) -> None:
    if episodes < 0:
        raise ConfigError("episodes", f"must be >= 0 (got {episodes})")
    if max_steps is not None and max_steps < 1:
        raise ConfigError("max_steps", f"must be >= 1 (got {max_steps})")


def _checked(journal: Journal, n: int, record: dict[str, Any]) -> dict[str, Any]:
    """What a replay of step ``n`` must reproduce, from its record."""
    missing = [key for key in _CHECKED if key not in record]
    if missing:
        raise JournalError(
            f"{journal.path}: step {n} is corrupt (no {', '.join(missing)}); "
            "was the journal edited?"
        )
    return {key: record[key] for key in _CHECKED}


def _both_nan(a: object, b: object) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


@dataclass(slots=True)
class DurableResult:
    """How a durable run ended.

    Attributes:
        state: ``completed``, ``paused`` (awaiting approval) or ``budget_exceeded``.
        run: the finished episodes (replayed ones included).
        replayed_steps: steps recomputed from the journal on this start.
        live_steps: steps run and committed on this start.
        pending: approval requests the run waits for (when paused).
        detail: why the run stopped, for ``paused`` and ``budget_exceeded``.
    """

    state: str
    run: RunResult = field(default_factory=RunResult)
    replayed_steps: int = 0
    live_steps: int = 0
    pending: list[Approval] = field(default_factory=list)
    detail: str | None = None

    @property
    def completed(self) -> bool:
        return self.state == "completed"


class DurableRunner:
    """Runs an agent's episodes against a journal; a new runner on the same journal resumes.

    Use :meth:`run` for each phase (``segment``) of a run, then :meth:`finish`; or call
    :func:`run_durable` for the one-phase case. Steps are numbered globally across
    segments, so one journal holds a whole experiment (train, eval, baselines).

    Args:
        journal: a :class:`Journal` or its path.
        agent: the agent's name, for budgets, approvals and the audit trail.
        budget: the run's limits (steps, tool calls, tokens, wall time).
        fingerprint: what identifies the run (config, seeds); a journal holding another
            run is refused with :class:`~llmagentos.exceptions.JournalError`.
        durability: ``process`` (the default: a step is logged with one ``write()``, it
            survives SIGKILL) or ``power_loss`` (the log is synced to disk in groups and
            before every tool or model call; see :mod:`llmagentos.durable.steplog`).
            Not a part of the run: a resume may choose another.

    Raises:
        JournalError: the journal is not one, holds another run, or has a row that does
            not match its digest (nothing is written then).
        ConfigError: ``durability`` is not a mode, or not the given journal's.
    """

    def __init__(
        self,
        journal: Journal | str | Path,
        *,
        agent: str = "agent",
        budget: Budget | None = None,
        fingerprint: dict[str, Any] | None = None,
        durability: str | None = None,
    ) -> None:
        if durability is not None:
            check_durability(durability)
        if isinstance(journal, Journal):
            if durability not in (None, journal.durability):
                raise ConfigError(
                    "durability", f"the journal was opened with {journal.durability!r}"
                )
            self.journal, owned = journal, False
        else:
            self.journal, owned = Journal(journal, durability=durability or "process"), True
        fingerprint = fingerprint or {"agent": agent}
        try:
            self.journal.verify()
            self._recorded = [
                _checked(self.journal, n, r) for n, r in enumerate(self.journal.steps())
            ]
            self.resumed = self.journal.bind(fingerprint)
        except BaseException:
            if owned:
                self.journal.close()
            raise
        status = self.journal.status()
        meter = None
        if budget is not None and not budget.unlimited:
            meter = BudgetMeter(budget, agent=agent, seconds_before=status.active_seconds)
        self.scope = StepScope(
            journal=self.journal, agent=agent, meter=meter, run_id=self.journal.run_id,
            seed_base=value_digest(fingerprint),
        )  # fmt: skip
        self.n = 0
        self._append: Callable[[int, bytes], None] | None = None  # the log's, once live
        self._pack = step_packer()
        self._active_since = time.monotonic()
        self._flushed_at = self._active_since
        what = f"resumed, replaying {len(self._recorded)} steps" if self.resumed else "started"
        self.journal.set_status("running", what)
        self.journal.audit("resumed" if self.resumed else "started", agent, detail=what)

    @property
    def replaying(self) -> bool:
        return self.n < len(self._recorded)

    @property
    def recorded_steps(self) -> int:
        return len(self._recorded)

    @property
    def live_steps(self) -> int:
        """Steps run and logged on this start (the replayed ones come first)."""
        return max(0, self.n - len(self._recorded))

    # -- the loop -------------------------------------------------------------------------

    def run(
        self,
        agent: Agent,
        episodes: int,
        *,
        seed: int | None = None,
        max_steps: int | None = None,
        train: bool | None = None,
        segment: str = "run",
        on_episode: Callable[[EpisodeResult], None] | None = None,
    ) -> RunResult:
        """Run ``episodes`` episodes as :meth:`Agent.run` does, durably.

        Raises:
            ApprovalPending: a tool call awaits a human decision (the run is paused).
            BudgetExceeded: a budget ran out (the run stops; the journal says so).
            ResumeMismatch: a replayed step differs from the journal.
        """
        _check_run_args(episodes, max_steps)
        result = RunResult()
        with self._running(agent, train):
            for index in range(episodes):
                started = _perf()
                episode_seed = seed if index == 0 else None
                self.scope.move_to(self.n)
                observation = agent.reset(seed=episode_seed)
                self._episode_steps(agent, observation, max_steps, segment)
                self._finish_episode(
                    agent, result, episode_seed, started, segment=segment, on_episode=on_episode
                )
        return result

    async def arun(
        self,
        agent: Agent,
        episodes: int,
        *,
        seed: int | None = None,
        max_steps: int | None = None,
        train: bool | None = None,
        segment: str = "run",
        on_episode: Callable[[EpisodeResult], None] | None = None,
    ) -> RunResult:
        """Async twin of :meth:`run` (``areset``/``aact``/``astep``): many durable agents
        share one event loop, each with its own runner and journal."""
        _check_run_args(episodes, max_steps)
        result = RunResult()
        async with self._arunning(agent, train):
            for index in range(episodes):
                started = _perf()
                episode_seed = seed if index == 0 else None
                self.scope.move_to(self.n)
                observation = await agent.areset(seed=episode_seed)
                while self._may_step(agent, max_steps):
                    action = await agent.aact(observation)
                    self._note_reason(agent)
                    observation, _ = await agent.astep(action)
                    # The commit is SQLite I/O: off the loop, which other agents share.
                    await run_blocking(self._commit, agent, segment)
                episode = agent._episode_result(episode_seed, started)
                await run_blocking(self._record_episode, segment, len(result.episodes), episode)
                result.episodes.append(episode)
                if on_episode is not None:
                    on_episode(episode)
        return result

    @contextmanager
    def _running(self, agent: Agent, train: bool | None) -> Iterator[None]:
        previous = agent.training
        if train is not None:
            agent.train(train)
        try:
            with scope_active(self.scope):
                yield
        except (ApprovalPending, BudgetExceeded) as err:
            self._stop(err)
            raise
        finally:
            self._flush_active()
            if train is not None:
                agent.train(previous)

    @asynccontextmanager
    async def _arunning(self, agent: Agent, train: bool | None) -> AsyncIterator[None]:
        previous = agent.training
        if train is not None:
            agent.train(train)
        try:
            with scope_active(self.scope):
                yield
        except (ApprovalPending, BudgetExceeded) as err:
            await run_blocking(self._stop, err)
            raise
        finally:
            await run_blocking(self._flush_active)
            if train is not None:
                agent.train(previous)

    def _episode_steps(
        self, agent: Agent, observation: Any, max_steps: int | None, segment: str
    ) -> None:
        """Step until the episode ends: :meth:`_may_step`, ``act``, :meth:`_note_reason`,
        ``step`` and :meth:`_commit`, written out. On Taxi-v4 every call made per step
        is a measurable part of the step, so the loop makes as few as it can."""
        scope, act, step, monotonic = self.scope, agent.act, agent.step, time.monotonic
        meter = scope.meter
        replayed = len(self._recorded)
        append, pack_step = self._append, self._pack
        while not agent._blocked:
            if agent.step_index == max_steps:
                agent._cut()
                return
            n = self.n
            if n != scope.n:  # scope.move_to(n), inline
                scope.n = n
                if scope._seq:
                    scope._seq.clear()
            scope.reason = None
            if meter is not None:
                meter.charge("steps")
                meter.check_time()
            action = act(observation)
            acted = agent._acted
            decision = None if acted is None else acted[3]
            scope.reason = None if decision is None else decision.reason
            observation, _ = step(action)
            self.n = n + 1
            if n < replayed:
                self._check_replay(n, agent)
                continue
            body = pack_step(n, segment, agent)
            if append is None:
                append = self._append = self.journal.step_appender()
            append(n, body)
            now = monotonic()
            if now - self._flushed_at > _ACTIVE_FLUSH_SECONDS:
                self._flush_active(now)

    def _may_step(self, agent: Agent, max_steps: int | None) -> bool:
        """Whether the episode goes on; enters the next step (position, budget) if so."""
        if agent._blocked:
            return False
        if agent.step_index == max_steps:
            agent._cut()
            return False
        self.scope.move_to(self.n)
        meter = self.scope.meter
        if meter is not None:
            meter.charge("steps")
            meter.check_time()
        return True

    def _note_reason(self, agent: Agent) -> None:
        acted = agent._acted
        decision = None if acted is None else acted[3]
        self.scope.reason = None if decision is None else decision.reason

    def _finish_episode(
        self,
        agent: Agent,
        result: RunResult,
        seed: int | None,
        started: float,
        *,
        segment: str,
        on_episode: Callable[[EpisodeResult], None] | None,
    ) -> None:
        episode = agent._episode_result(seed, started)
        self._record_episode(segment, len(result.episodes), episode)
        result.episodes.append(episode)
        if on_episode is not None:
            on_episode(episode)

    def _record_episode(self, segment: str, index: int, episode: EpisodeResult) -> None:
        if not self.replaying:
            self.journal.append_episode(segment, index, episode.to_dict())

    def _commit(self, agent: Agent, segment: str) -> None:
        n = self.n
        self.n = n + 1
        if n < len(self._recorded):
            self._check_replay(n, agent)
            return
        if self._append is None:
            self._append = self.journal.step_appender()
        self._append(n, self._pack(n, segment, agent))
        now = time.monotonic()
        if now - self._flushed_at > _ACTIVE_FLUSH_SECONDS:
            self._flush_active(now)

    def _check_replay(self, n: int, agent: Agent) -> None:
        record = agent.last_record
        assert record is not None  # a step just finished
        replayed = {
            "episode": record.episode, "step": record.step, "action": jsonable(record.action),
            "reward": record.reward, "terminated": record.terminated,
            "truncated": record.truncated,
        }  # fmt: skip
        recorded = self._recorded[n]
        for key in _CHECKED:
            mine = replayed[key]
            if mine != recorded[key] and not _both_nan(mine, recorded[key]):
                raise ResumeMismatch(n, key, recorded[key], mine)

    def _flush_active(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.journal.add_active_seconds(now - self._flushed_at)
        self._flushed_at = now

    # -- endings --------------------------------------------------------------------------

    def _stop(self, err: ApprovalPending | BudgetExceeded) -> None:
        if isinstance(err, ApprovalPending):
            self.journal.set_status("paused", str(err))
            self.journal.audit("paused", err.tool, n=self.n, detail={"key": err.key})
        else:
            self.journal.set_status("budget_exceeded", str(err))
            self.journal.audit(
                "budget_exceeded", err.resource, n=self.n,
                detail={"limit": err.limit, "used": err.used},
            )  # fmt: skip

    def finish(self, state: str = "completed", detail: str | None = None) -> None:
        """Mark the run ``state`` (``completed``, ``failed``, ``interrupted``)."""
        self._flush_active()
        self.journal.set_status(state, detail)
        self.journal.audit(state, self.scope.agent, n=self.n, detail=detail)

    def close(self) -> None:
        self.journal.close()


def run_durable(
    agent: Agent,
    journal: Journal | str | Path,
    episodes: int,
    *,
    seed: int | None = None,
    max_steps: int | None = None,
    train: bool | None = None,
    budget: Budget | None = None,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    durability: str | None = None,
) -> DurableResult:
    """Run ``agent`` for ``episodes`` episodes with every step journaled.

    Call it again with the same arguments after a crash (or after an approval) and
    the run resumes where it stopped. ``durability`` is what the journal survives
    (:class:`DurableRunner`). A paused run or a spent budget is a result, not
    an exception; other errors mark the run ``failed`` and propagate.

    Example::

        result = run_durable(agent, "runs/shop/run.db", episodes=20, seed=0)
        if result.state == "paused":
            print("waiting for approval of", [a.tool for a in result.pending])
    """
    fingerprint = {
        "agent": agent.name, "episodes": episodes, "seed": seed, "max_steps": max_steps,
        "train": train,
    }  # fmt: skip
    runner = DurableRunner(
        journal, agent=agent.name, budget=budget, fingerprint=fingerprint, durability=durability
    )
    try:
        outcome = DurableResult("running")
        try:
            outcome.run = runner.run(
                agent, episodes, seed=seed, max_steps=max_steps, train=train,
                on_episode=on_episode,
            )  # fmt: skip
        except ApprovalPending as err:
            outcome.state, outcome.detail = "paused", str(err)
            outcome.pending = runner.journal.approvals("pending")
        except BudgetExceeded as err:
            outcome.state, outcome.detail = "budget_exceeded", str(err)
        except KeyboardInterrupt:
            runner.finish("interrupted")
            raise
        except Exception as err:
            runner.finish("failed", f"{type(err).__name__}: {err}")
            raise
        else:
            outcome.state = "completed"
            runner.finish("completed")
        outcome.replayed_steps = min(runner.n, runner.recorded_steps)
        outcome.live_steps = runner.live_steps
        return outcome
    finally:
        if not isinstance(journal, Journal):
            runner.close()
