"""Whole episodes and runs of them: the part of the Agent above single steps.

:class:`EpisodeRunner` is a mixin of :class:`~llmagentos.agent.Agent`: it drives the
agent's own ``reset``/``act``/``step`` (or their async twins) until an episode ends,
and collects :class:`~llmagentos.types.EpisodeResult` records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmagentos.exceptions import ConfigError
from llmagentos.types import Action, EpisodeResult, Observation, RunResult, StepRecord

__all__ = ["EpisodeListener", "EpisodeRunner"]

EpisodeListener = Callable[[EpisodeResult], None]

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
        self.truncated = True
        self._blocked = True

    def run_episode(
        self, *, seed: int | None = None, max_steps: int | None = None
    ) -> EpisodeResult:
        """Run one episode to its end (or ``max_steps``, which then counts as truncation)."""
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
    ) -> RunResult:
        """Run ``episodes`` episodes; return their results.

        Args:
            episodes: how many episodes.
            seed: seeds the first episode's reset; later episodes continue the streams
                (Gymnasium's convention), so a seeded run is reproducible as a whole.
            max_steps: cut each episode after this many steps.
            train: ``True`` to learn, ``False`` to evaluate greedily; ``None`` keeps the
                current mode. The previous mode is restored afterwards.
            on_episode: called with each episode's result as it finishes.
        """
        _check_run_args(episodes, max_steps)
        previous = self.training
        if train is not None:
            self.train(train)
        result = RunResult()
        try:
            for index in range(episodes):
                episode = self.run_episode(seed=seed if index == 0 else None, max_steps=max_steps)
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
    ) -> RunResult:
        """Async twin of :meth:`run`."""
        _check_run_args(episodes, max_steps)
        previous = self.training
        if train is not None:
            self.train(train)
        result = RunResult()
        try:
            for index in range(episodes):
                episode = await self.arun_episode(
                    seed=seed if index == 0 else None, max_steps=max_steps
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
