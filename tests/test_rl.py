"""Tabular RL: the seed's Q-learning rule exactly, SARSA, Expected SARSA, selectors, tables."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from llmagentos.exceptions import ConfigError, QTableError
from llmagentos.rl import (
    EpsilonGreedySelector,
    ExpectedSarsa,
    GreedySelector,
    QLearning,
    QTable,
    RandomSelector,
    Sarsa,
    SoftmaxSelector,
    as_schedule,
)
from llmagentos.types import Transition


def step(
    s: int, a: int, r: float, s2: int, *, terminated: bool = False, truncated: bool = False
) -> Transition:
    return Transition(s, s, a, r, s2, s2, terminated, truncated)


def test_q_learning_applies_the_seed_update_rule_exactly() -> None:
    q = QTable(2, 3)
    q[0, 1] = 2.0
    q[1, 0] = 5.0
    q[1, 1] = 3.0
    learner = QLearning(q, alpha=0.25, gamma=0.9)
    report = learner.update(step(0, 1, 1.0, 1))
    # Q(s,a) <- Q(s,a) + alpha [r + gamma max_a' Q(s',a') - Q(s,a)]
    expected = 2.0 + 0.25 * (1.0 + 0.9 * 5.0 - 2.0)
    assert q[0, 1] == pytest.approx(expected)
    assert report is not None
    assert report["td_error"] == pytest.approx(1.0 + 0.9 * 5.0 - 2.0)
    assert (report["q_old"], report["q_new"]) == (2.0, pytest.approx(expected))
    assert q.visits[0][1] == 1


def test_no_bootstrap_from_terminal_states_but_truncation_bootstraps() -> None:
    q = QTable(1, 2)
    q[1, 0] = 10.0
    QLearning(q, alpha=1.0, gamma=0.5).update(step(0, 0, 1.0, 1, terminated=True))
    assert q[0, 0] == 1.0
    QLearning(q, alpha=1.0, gamma=0.5).update(step(0, 0, 1.0, 1, truncated=True))
    assert q[0, 0] == 1.0 + 0.5 * 10.0


def test_sarsa_bootstraps_from_the_action_actually_taken_next() -> None:
    q = QTable(2, 3)
    q[1, 0], q[1, 1] = 4.0, 8.0
    sarsa = Sarsa(q, alpha=1.0, gamma=0.5)
    assert sarsa.update(step(0, 0, 1.0, 1)) is None  # waits for the next action
    report = sarsa.update(step(1, 0, 0.0, 2, terminated=True))
    # Step 0's target used Q(1, 0) = 4 (the action taken), not max = 8.
    assert q[0, 0] == 1.0 + 0.5 * 4.0
    assert q[1, 0] == 0.0  # terminal step: target = r = 0
    assert report is not None and report["state"] == 1


def test_sarsa_settles_an_abandoned_pending_step_on_reset() -> None:
    q = QTable(2, 2)
    q[1, 1] = 6.0
    sarsa = Sarsa(q, alpha=1.0, gamma=0.5)
    sarsa.update(step(0, 0, 1.0, 1))
    sarsa.reset()
    assert q[0, 0] == 1.0 + 0.5 * 6.0


def test_expected_sarsa_uses_the_epsilon_greedy_expectation() -> None:
    q = QTable(3, 2)
    q[1, 0], q[1, 1], q[1, 2] = 1.0, 4.0, 4.0
    learner = ExpectedSarsa(q, alpha=1.0, gamma=1.0, epsilon=0.3)
    learner.update(step(0, 0, 0.0, 1))
    expected = 0.3 / 3 * (1.0 + 4.0 + 4.0) + 0.7 * 4.0
    assert q[0, 0] == pytest.approx(expected)


def test_alpha_schedule_advances_with_learning() -> None:
    q = QTable(1, 1)
    learner = QLearning(
        q, alpha={"type": "linear", "start": 1.0, "end": 0.5, "duration": 2}, gamma=0.0
    )
    alphas = [learner.update(step(0, 0, 1.0, 0, terminated=True))["alpha"] for _ in range(4)]  # type: ignore[index]
    assert alphas == [1.0, 0.75, 0.5, 0.5]


def test_schedules_from_config_values() -> None:
    assert as_schedule(0.2).value(10**6) == 0.2
    linear = as_schedule(
        {"type": "linear", "start": 1.0, "end": 0.0, "duration": 10, "per": "episode"}
    )
    assert (linear.value(0), linear.value(5), linear.value(50), linear.per) == (
        1.0,
        0.5,
        0.0,
        "episode",
    )
    exponential = as_schedule({"type": "exponential", "start": 1.0, "end": 0.1, "decay": 0.5})
    assert [exponential.value(t) for t in range(5)] == [1.0, 0.5, 0.25, 0.125, 0.1]
    assert as_schedule({"type": "constant", "value": 3}).value(7) == 3
    with pytest.raises(ConfigError, match=r"epsilon\.type"):
        as_schedule({"type": "cosine"}, field="epsilon")
    with pytest.raises(ConfigError, match="decay"):
        as_schedule({"type": "exponential", "start": 1, "end": 0, "decay": 2})
    with pytest.raises(ConfigError, match="per"):
        as_schedule({"type": "linear", "start": 1, "end": 0, "duration": 3, "per": "hour"})


def test_greedy_breaks_ties_at_random_and_explains_itself() -> None:
    q = QTable(4, 1)
    selector = GreedySelector(q, seed=0)
    picks = Counter(selector.select(0).action for _ in range(400))
    assert set(picks) == {0, 1, 2, 3}
    q[0, 2] = 1.0
    decision = selector.select(0)
    assert decision.action == 2
    assert decision.scores == [0.0, 0.0, 1.0, 0.0]
    assert decision.reason == "greedy: highest Q-value"
    q[0, 1] = 1.0
    assert "tie among 2" in (selector.select(0).reason or "")


def test_epsilon_greedy_explores_at_rate_epsilon_and_is_greedy_in_eval() -> None:
    q = QTable(2, 1)
    q[0, 1] = 1.0
    selector = EpsilonGreedySelector(q, epsilon=0.5, seed=1)
    actions = [selector.select(0).action for _ in range(4000)]
    # Greedy half the time plus half of the random picks: P(best) = 0.75.
    assert actions.count(1) / len(actions) == pytest.approx(0.75, abs=0.03)
    assert all(selector.select(0, explore=False).action == 1 for _ in range(50))


def test_epsilon_schedule_counts_episodes_from_resets() -> None:
    q = QTable(2, 1)
    selector = EpsilonGreedySelector(
        q, epsilon={"type": "linear", "start": 1.0, "end": 0.0, "duration": 4, "per": "episode"}
    )
    seen = []
    for _ in range(6):
        selector.reset()
        seen.append(selector.current_epsilon())
    assert seen == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    selector.load_state_dict({"episodes": 2, "steps": 0})
    assert selector.current_epsilon() == 0.5


def test_softmax_prefers_higher_values_by_temperature() -> None:
    q = QTable(2, 1)
    q[0, 1] = 1.0
    selector = SoftmaxSelector(q, temperature=0.5, seed=0)
    share = sum(selector.select(0).action for _ in range(4000)) / 4000
    assert share == pytest.approx(1 / (1 + math.exp(-2.0)), abs=0.03)
    assert selector.probabilities([0.0, 1.0], 0.5)[1] == pytest.approx(1 / (1 + math.exp(-2)))


def test_random_selector_is_seeded() -> None:
    a = [RandomSelector(5, seed=3).select(None).action for _ in range(1)]
    first = RandomSelector(5, seed=3)
    second = RandomSelector(5, seed=3)
    assert [first.select(None).action for _ in range(20)] == [
        second.select(None).action for _ in range(20)
    ]
    assert 0 <= a[0] < 5


def test_qtable_round_trips_through_inspectable_json(tmp_path: Path) -> None:
    q = QTable(3, 4, initial=0.5)
    q.update(2, 1, 10.0, 0.5)
    q.meta["env"] = "Taxi-v4"
    path = q.save(tmp_path / "q.json")
    data = json.loads(path.read_text())
    assert data["format"] == "llmagentos.qtable"
    assert data["values"][2] == [0.5, 5.25, 0.5]
    loaded = QTable.load(path)
    assert loaded.rows == q.rows and loaded.visits == q.visits
    assert loaded.meta == {"env": "Taxi-v4"} and loaded.initial == 0.5
    assert loaded.as_array().shape == (4, 3)


def test_growing_qtable_keeps_arbitrary_hashable_states(tmp_path: Path) -> None:
    q = QTable(2)
    assert q.values(("room", 3)) == [0.0, 0.0]  # reading does not add a row
    assert len(q) == 0
    q.update(("room", 3), 1, 4.0, 0.5)
    q.update("hall", 0, 1.0, 1.0)
    loaded = QTable.load(q.save(tmp_path / "q.json"))
    assert loaded[("room", 3), 1] == 2.0
    assert loaded["hall", 0] == 1.0
    assert list(loaded.states()) == [("room", 3), "hall"]


def test_qtable_errors_name_the_problem(tmp_path: Path) -> None:
    q = QTable(2, 3)
    with pytest.raises(QTableError, match=r"outside 0\.\.2"):
        q.values(3)
    with pytest.raises(QTableError, match="not an integer"):
        q.values("a")
    with pytest.raises(QTableError, match="no such file"):
        QTable.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(QTableError, match="not an llmagentos Q-table"):
        QTable.load(bad)
    with pytest.raises(QTableError, match="500 states x 6 actions"):
        q.check_fits(n_actions=6, n_states=500)


def _transition(**changes: object) -> Transition:
    base: dict[str, object] = {
        "observation": 0, "features": 0, "action": 2, "reward": -1.0, "next_observation": 1,
        "next_features": 1, "terminated": False, "truncated": False,
    }  # fmt: skip
    return Transition(**{**base, **changes})  # type: ignore[arg-type]


BAD_TRANSITIONS = {
    "negative action": {"action": -1},  # a list would take it from the end
    "bool action": {"action": True},
    "action past the last": {"action": 6},
    "float action": {"action": 2.5},
    "NaN reward": {"reward": math.nan},
    "infinite reward": {"reward": -math.inf},
    "next state outside": {"next_features": 99_999},
    "state outside": {"features": -1},
}


@pytest.mark.parametrize("learner", ["q_learning", "expected_sarsa", "sarsa"])
@pytest.mark.parametrize("bad", list(BAD_TRANSITIONS))
def test_a_transition_the_table_cannot_hold_is_refused_before_anything_changes(learner, bad):
    q = QTable(6, 500)
    make = {"q_learning": QLearning, "expected_sarsa": ExpectedSarsa, "sarsa": Sarsa}[learner]
    td = make(q, alpha=0.5, gamma=0.9)
    with pytest.raises(QTableError):
        td.update(_transition(**BAD_TRANSITIONS[bad]))
    assert q.as_array().sum() == 0 and sum(map(sum, q.visits)) == 0
    # Nothing was kept pending either: the next good transitions learn as usual.
    td.update(_transition())
    td.update(_transition(features=1, next_features=2, terminated=True))
    assert q.as_array().sum() != 0


def test_numpy_integer_actions_are_columns():
    q = QTable(6, 10)
    q.update(3, np.int64(4), 1.0, 0.5)
    assert q[3, 4] == 0.5
