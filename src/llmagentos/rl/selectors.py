"""Action selectors over action values: random, greedy, epsilon-greedy, softmax.

Each returns a :class:`~llmagentos.types.Decision` carrying the scores it chose from
and a one-line reason, so every choice in a trace explains itself. Randomness comes
from a private :class:`random.Random`, reseeded by ``reset(seed=...)``; greedy ties
are broken at random, which matters while a table is still all zeros.
"""

from __future__ import annotations

import math
import random
from typing import Any, Protocol, runtime_checkable

from llmagentos.exceptions import ConfigError
from llmagentos.rl.schedules import Clocked, ScheduleLike, as_schedule, check_range
from llmagentos.types import Decision, Features

__all__ = [
    "ActionValues",
    "EpsilonGreedySelector",
    "GreedySelector",
    "RandomSelector",
    "SoftmaxSelector",
]


@runtime_checkable
class ActionValues(Protocol):
    """Anything that scores every action of a state (a :class:`~llmagentos.rl.QTable`)."""

    n_actions: int

    def values(self, state: Any) -> list[float]: ...


_UNIQUE_BEST = {"greedy": "greedy: highest Q-value", "exploit": "exploit: highest Q-value"}


class _Selector(Clocked):
    """Shared seeding and tie-breaking; schedules run on the :class:`Clocked` counters."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def reset(self, *, seed: int | None = None) -> None:
        if seed is not None:
            self.rng.seed(seed)
        super().reset(seed=seed)

    def greedy_reason(self, prefix: str, ties: int) -> str:
        # Plain strings: the scores ride along in the Decision, so the reason need not
        # format numbers on the hot path.
        if ties == 1:
            return _UNIQUE_BEST[prefix]
        return f"{prefix}: highest Q-value (tie among {ties}, broken at random)"

    def greedy(self, scores: list[float]) -> tuple[int, int]:
        """The best action (random among ties) and how many actions tie for best."""
        best = max(scores)
        ties = scores.count(best)
        if ties == 1:
            return scores.index(best), 1
        candidates = [i for i, v in enumerate(scores) if v == best]
        return candidates[self.rng.randrange(ties)], ties


class RandomSelector(_Selector):
    """Uniformly random actions: the baseline and the default explorer.

    Args:
        n_actions: number of discrete actions.
        seed: seed of the private random generator.
    """

    def __init__(self, n_actions: int, *, seed: int | None = None) -> None:
        super().__init__(seed)
        if n_actions < 1:
            raise ConfigError("n_actions", f"must be at least 1 (got {n_actions})")
        self.n_actions = n_actions

    def select(self, features: Features, task: Any = None, *, explore: bool = True) -> Decision:
        self.steps += explore
        return Decision(self.rng.randrange(self.n_actions), f"random of {self.n_actions}")


class GreedySelector(_Selector):
    """Always the highest-valued action.

    Args:
        values: the action values to choose from (a Q-table).
        seed: seed of the tie-breaking random generator.
    """

    def __init__(self, values: ActionValues, *, seed: int | None = None) -> None:
        super().__init__(seed)
        self.q = values

    def select(self, features: Features, task: Any = None, *, explore: bool = True) -> Decision:
        scores = self.q.values(features)
        action, ties = self.greedy(scores)
        return Decision(action, self.greedy_reason("greedy", ties), list(scores))


class EpsilonGreedySelector(GreedySelector):
    """Random with probability epsilon, greedy otherwise (greedy always in evaluation).

    Args:
        values: the action values to choose from.
        epsilon: exploration probability: a number or a schedule.
        seed: seed of the private random generator.
    """

    def __init__(
        self, values: ActionValues, *, epsilon: ScheduleLike = 0.1, seed: int | None = None
    ) -> None:
        super().__init__(values, seed=seed)
        self.epsilon = check_range(as_schedule(epsilon, field="epsilon"), "epsilon", low=0, high=1)
        self._explained_epsilon = -1.0
        self._explore_reason = ""

    def current_epsilon(self) -> float:
        return self.now(self.epsilon)

    def select(self, features: Features, task: Any = None, *, explore: bool = True) -> Decision:
        if not explore:
            return super().select(features, task, explore=False)
        epsilon = self.now(self.epsilon)
        self.steps += 1
        scores = self.q.values(features)
        if self.rng.random() < epsilon:
            if epsilon != self._explained_epsilon:  # format only when epsilon changes
                self._explained_epsilon = epsilon
                self._explore_reason = f"explore: random action (epsilon={epsilon:.3f})"
            return Decision(self.rng.randrange(len(scores)), self._explore_reason, list(scores))
        action, ties = self.greedy(scores)
        return Decision(action, self.greedy_reason("exploit", ties), list(scores))


class SoftmaxSelector(GreedySelector):
    """Boltzmann exploration: P(a) proportional to exp(Q(s, a) / temperature).

    Args:
        values: the action values to choose from.
        temperature: a positive number or a schedule.
        seed: seed of the private random generator.
    """

    def __init__(
        self, values: ActionValues, *, temperature: ScheduleLike = 1.0, seed: int | None = None
    ) -> None:
        super().__init__(values, seed=seed)
        self.temperature = check_range(
            as_schedule(temperature, field="temperature"),
            "temperature",
            low=0.0,
            high=math.inf,
            low_open=True,
        )

    def probabilities(self, scores: list[float], temperature: float) -> list[float]:
        top = max(scores)
        weights = [math.exp((v - top) / temperature) for v in scores]
        total = sum(weights)
        return [w / total for w in weights]

    def select(self, features: Features, task: Any = None, *, explore: bool = True) -> Decision:
        if not explore:
            return super().select(features, task, explore=False)
        temperature = self.now(self.temperature)
        self.steps += 1
        scores = self.q.values(features)
        probs = self.probabilities(scores, temperature)
        action = self.rng.choices(range(len(scores)), weights=probs)[0]
        reason = f"softmax: p={probs[action]:.3f} at temperature {temperature:.3f}"
        return Decision(action, reason, list(scores))
