"""Whole episodes and runs of them: the part of the Agent above single steps.

:class:`EpisodeRunner` is a mixin of :class:`~llmagentos.agent.Agent`: it drives the
agent's own ``reset``/``act``/``step`` (or their async twins) until an episode ends,
and collects :class:`~llmagentos.types.EpisodeResult` records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from llmagentos.exceptions import ConfigError
from llmagentos.telemetry.state import TELEMETRY
from llmagentos.types import Action, EpisodeResult, Observation, RunResult, StepRecord

__all__ = ["Backend", "EpisodeListener", "EpisodeRunner", "Reseed"]

EpisodeListener = Callable[[EpisodeResult], None]
Reseed = Literal["first", "each"]
Backend = Literal["local", "ray"]

_perf = time.perf_counter


class EpisodeRunner:
    """Run episodes on top of an agent's single-step loop."""

    training: bool
    episode: int
    step_index: int
    episode_return: float
    terminated: bool
    truncated: bool
    _blocked: bool

    if TYPE_CHECKING:  # provided by the Agent

        @property
        def last_record(self) -> StepRecord | None: ...
        def reset(self, *, seed: int | None = None) -> Observation: ...
        def act(self, observation: Observation) -> Action: ...
        def step(self, action: Action) -> tuple[Observation, float]: ...
        def train(self, mode: bool = True) -> EpisodeRunner: ...
        def _end_episode(self, terminated: bool, truncated: bool) -> None: ...
        async def areset(self, *, seed: int | None = None) -> Observation: ...
        async def aact(self, observation: Observation) -> Action: ...
        async def astep(self, action: Action) -> tuple[Observation, float]: ...

    def _episode_result(self, seed: int | None, started: float) -> EpisodeResult:
        record = self.last_record
        verdict = None if record is None else record.info.get("is_success")
        return EpisodeResult(
            episode=self.episode,
            total_reward=self.episode_return,
            length=self.step_index,
            terminated=self.terminated,
            truncated=self.truncated,
            seed=seed,
            seconds=_perf() - started,
            training=self.training,
            success=None if verdict is None else bool(verdict),
        )

    def _cut(self) -> None:
        """End the episode at the caller's step limit (counts as truncation)."""
        self._end_episode(self.terminated, True)

    def run_episode(
        self, *, seed: int | None = None, max_steps: int | None = None
    ) -> EpisodeResult:
        """Run one episode to its end (or ``max_steps``, which then counts as truncation)."""
        if TELEMETRY.on:
            from llmagentos.telemetry.agent_spans import traced_episode

            return traced_episode(self, seed, max_steps)
        started = _perf()
        observation = self.reset(seed=seed)
        act, step = self.act, self.step
        limit = -1 if max_steps is None else max_steps
        while not self._blocked:
            if self.step_index == limit:
                self._cut()
                break
            observation, _ = step(act(observation))
        return self._episode_result(seed, started)

    def run(
        self,
        episodes: int,
        *,
        seed: int | None = None,
        max_steps: int | None = None,
        train: bool | None = None,
        on_episode: EpisodeListener | None = None,
        reseed: Reseed | None = None,
        backend: Backend = "local",
        workers: int | None = None,
        address: str | None = None,
    ) -> RunResult:
        """Run ``episodes`` episodes; return their results.

        Args:
            episodes: how many episodes.
            seed: with ``reseed="first"`` (the local default) seeds the first episode's
                reset, and later episodes continue the streams (Gymnasium's
                convention), so a seeded run is reproducible as a whole; with
                ``reseed="each"`` episode ``i`` is seeded with ``seed + i``.
            max_steps: cut each episode after this many steps.
            train: ``True`` to learn, ``False`` to evaluate greedily; ``None`` keeps the
                current mode. The previous mode is restored afterwards.
            on_episode: called with each episode's result as it finishes.
            reseed: ``"first"`` or ``"each"`` (see ``seed``); Ray runs need ``"each"``,
                so no episode depends on which worker ran the ones before it.
            backend: ``"local"`` (this process) or ``"ray"``: the episodes run on Ray
                workers (``llmagentos[ray]``; see :mod:`llmagentos.distributed.rollouts`
                for what equals the local run and what training merges).
            workers: Ray workers (default: the cluster's CPUs).
            address: the Ray cluster (default: the one connected to, ``RAY_ADDRESS``, or
                a new local instance).
        """
        _check_run_args(episodes, max_steps)
        if backend not in ("local", "ray"):
            raise ConfigError("backend", f"must be 'local' or 'ray' (got {backend!r})")
        if reseed not in (None, "first", "each"):
            raise ConfigError("reseed", f"must be 'first' or 'each' (got {reseed!r})")
        if backend == "local" and (workers is not None or address is not None):
            raise ConfigError("backend", "workers and address need backend='ray'")
        previous = self.training
        if train is not None:
            self.train(train)
        result = RunResult()
        try:
            if backend == "ray":
                if reseed == "first":
                    raise ConfigError(
                        "reseed",
                        "a Ray run seeds each episode on its own (reseed='each'): a stream "
                        "continued from episode to episode would depend on the worker",
                    )
                from llmagentos.distributed.rollouts import run_on_ray

                return run_on_ray(
                    self,  # type: ignore[arg-type]  # the Agent this mixin is part of
                    episodes,
                    seed=seed,
                    max_steps=max_steps,
                    training=self.training,
                    on_episode=on_episode,
                    workers=workers,
                    address=address,
                )
            for index in range(episodes):
                episode_seed = _episode_seed(seed, index, reseed)
                episode = self.run_episode(seed=episode_seed, max_steps=max_steps)
                result.episodes.append(episode)
                if on_episode is not None:
                    on_episode(episode)
        finally:
            if train is not None:
                self.train(previous)
        return result

    async def arun_episode(
        self, *, seed: int | None = None, max_steps: int | None = None
    ) -> EpisodeResult:
        """Async twin of :meth:`run_episode`."""
        if TELEMETRY.on:
            from llmagentos.telemetry.agent_spans import traced_aepisode

            return await traced_aepisode(self, seed, max_steps)
        started = _perf()
        observation = await self.areset(seed=seed)
        limit = -1 if max_steps is None else max_steps
        while not self._blocked:
            if self.step_index == limit:
                self._cut()
                break
            observation, _ = await self.astep(await self.aact(observation))
        return self._episode_result(seed, started)

    async def arun(
        self,
        episodes: int,
        *,
        seed: int | None = None,
        max_steps: int | None = None,
        train: bool | None = None,
        on_episode: EpisodeListener | None = None,
        reseed: Reseed | None = None,
    ) -> RunResult:
        """Async twin of :meth:`run` (in this process)."""
        _check_run_args(episodes, max_steps)
        if reseed not in (None, "first", "each"):
            raise ConfigError("reseed", f"must be 'first' or 'each' (got {reseed!r})")
        previous = self.training
        if train is not None:
            self.train(train)
        result = RunResult()
        try:
            for index in range(episodes):
                episode = await self.arun_episode(
                    seed=_episode_seed(seed, index, reseed), max_steps=max_steps
                )
                result.episodes.append(episode)
                if on_episode is not None:
                    on_episode(episode)
        finally:
            if train is not None:
                self.train(previous)
        return result


def _check_run_args(episodes: int, max_steps: int | None) -> None:
    if episodes < 0:
        raise ConfigError("episodes", f"must be >= 0 (got {episodes})")
    if max_steps is not None and max_steps < 1:
        raise ConfigError("max_steps", f"must be >= 1 (got {max_steps})")


def _episode_seed(seed: int | None, index: int, reseed: Reseed | None) -> int | None:
    if seed is None:
        return None
    if reseed == "each":
        return seed + index
    return seed if index == 0 else None
