"""Temporal-difference control: Q-learning (the seed's rule), SARSA and Expected SARSA.

All three move Q(s, a) toward a target by a step size alpha::

    Q(s, a) <- Q(s, a) + alpha * [target - Q(s, a)]

and differ only in the target. Q-learning's is the seed's (section 4.3)::

    target = r + gamma * max_a' Q(s', a')

A *terminated* transition does not bootstrap (target = r): there is no future after a
terminal state. A *truncated* one (a time limit) does, because the state it stopped
in still has a future.
"""

from __future__ import annotations

from typing import Any

from llmagentos.exceptions import ConfigError, QTableError
from llmagentos.rl.qtable import QTable
from llmagentos.rl.schedules import Clocked, Schedule, ScheduleLike, as_schedule, check_range
from llmagentos.types import Transition

__all__ = ["ExpectedSarsa", "QLearning", "Sarsa", "TemporalDifference"]


class TemporalDifference(Clocked):
    """The shared machinery: step-size and discount, counters, and the update itself.

    Args:
        q: the Q-table to learn (shared with the planner's selector).
        alpha: step size: a number in (0, 1] or a schedule.
        gamma: discount factor in [0, 1].
    """

    algorithm = "td"

    def __init__(self, q: QTable, *, alpha: ScheduleLike = 0.1, gamma: float = 0.99) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ConfigError("gamma", f"must be in [0, 1] (got {gamma})")
        self.q = q
        self.alpha: Schedule = check_range(
            as_schedule(alpha, field="alpha"), "alpha", low=0.0, high=1.0, low_open=True
        )
        self.gamma = float(gamma)

    def current_alpha(self) -> float:
        return self.now(self.alpha)

    def bootstrap(self, transition: Transition) -> float:
        """The value of the next state the target discounts (0 after a terminal state)."""
        return self.q.max_value(transition.next_features)

    def _apply(self, transition: Transition, next_value: float) -> dict[str, Any]:
        alpha = self.current_alpha()
        target = transition.reward
        if not transition.terminated:
            target += self.gamma * next_value
        old, new = self.q.update(transition.features, transition.action, target, alpha)
        self.steps += 1
        return {
            "state": transition.features,
            "action": transition.action,
            "target": target,
            "td_error": target - old,
            "q_old": old,
            "q_new": new,
            "alpha": alpha,
        }

    def check(self, transition: Transition) -> None:
        """Refuse a transition the table cannot learn from, before anything changes.

        Raises:
            QTableError: its action is not one of the table's, its reward is not a
                finite number, or a state is outside a fixed-size table.
        """
        self.q.action_index(transition.action)
        reward = transition.reward
        if not reward - reward == 0.0:  # NaN or an infinity
            raise QTableError(f"reward {reward!r} is not a finite number")
        self.q.row_of(transition.features)
        if not transition.terminated:
            self.q.row_of(transition.next_features)

    def update(self, transition: Transition) -> dict[str, Any] | None:
        self.check(transition)
        next_value = 0.0 if transition.terminated else self.bootstrap(transition)
        return self._apply(transition, next_value)


class QLearning(TemporalDifference):
    """Off-policy TD control with the seed's update: the target takes max_a' Q(s', a')."""

    algorithm = "q_learning"


class ExpectedSarsa(TemporalDifference):
    """The target takes the expectation of Q(s', .) under the epsilon-greedy policy.

    Args:
        epsilon: the exploration rate of the policy being followed (number or schedule);
            use the same schedule as the planner's epsilon-greedy selector.
    """

    algorithm = "expected_sarsa"

    def __init__(
        self,
        q: QTable,
        *,
        alpha: ScheduleLike = 0.1,
        gamma: float = 0.99,
        epsilon: ScheduleLike = 0.1,
    ) -> None:
        super().__init__(q, alpha=alpha, gamma=gamma)
        self.epsilon = check_range(as_schedule(epsilon, field="epsilon"), "epsilon", low=0, high=1)

    def bootstrap(self, transition: Transition) -> float:
        scores = self.q.values(transition.next_features)
        epsilon = self.now(self.epsilon)
        # Every action gets epsilon/|A|; the greedy share (1 - epsilon) goes to the best
        # actions, which all have the value max(scores) however many tie.
        return epsilon / len(scores) * sum(scores) + (1.0 - epsilon) * max(scores)


class Sarsa(TemporalDifference):
    """On-policy TD control: the target uses the action actually taken next.

    That action is known only at the next step, so each update waits one step: the
    report of step t describes the update of step t - 1. A terminated step updates at
    once (no next action needed); a truncated step, having no next action, bootstraps
    with max_a' Q(s', a') as Q-learning does.
    """

    algorithm = "sarsa"

    def __init__(self, q: QTable, *, alpha: ScheduleLike = 0.1, gamma: float = 0.99) -> None:
        super().__init__(q, alpha=alpha, gamma=gamma)
        self._pending: Transition | None = None

    def reset(self, *, seed: int | None = None) -> None:
        # An episode abandoned mid-way leaves its last step pending: settle it greedily.
        self._flush()
        super().reset(seed=seed)

    def _flush(self) -> dict[str, Any] | None:
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        return self._apply(pending, self.q.max_value(pending.next_features))

    def update(self, transition: Transition) -> dict[str, Any] | None:
        # Checked now, not when it is settled a step later: a bad transition kept
        # pending would refuse every next call of the session instead.
        self.check(transition)
        report = None
        pending = self._pending
        if pending is not None:
            next_value = self.q.values(pending.next_features)[transition.action]
            report = self._apply(pending, next_value)
            self._pending = None
        if transition.terminated:
            report = self._apply(transition, 0.0)
        elif transition.truncated:
            report = self._apply(transition, self.q.max_value(transition.next_features))
        else:
            self._pending = transition
        return report
