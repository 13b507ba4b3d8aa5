"""SessionReplayEnv: hits are rewards, shown and rated items are refused, targets stay hidden."""

from __future__ import annotations

import numpy as np
import pytest

from llmagentos.exceptions import EnvError
from llmagentos.recommend.data import Ratings, time_split
from llmagentos.recommend.env import SessionReplayEnv


def small_env(slates: int = 3) -> SessionReplayEnv:
    # Users 1-3 rate before the cut (t=20), user 4 after it: half of their six ratings
    # (movies 100, 107, 102 = items 0, 7, 2) are history, the liked rest (103, 104 =
    # items 3, 4) targets; the 1-star 105 is neither.
    rows = [
        (1, 100, 5.0, 1), (1, 101, 5.0, 2), (1, 102, 5.0, 3), (1, 103, 5.0, 4),
        (2, 104, 5.0, 5), (2, 105, 5.0, 6), (3, 106, 5.0, 7), (3, 107, 2.0, 8),
        (4, 100, 5.0, 20), (4, 107, 4.0, 21), (4, 102, 5.0, 22), (4, 103, 4.0, 23),
        (4, 104, 4.5, 24), (4, 105, 1.0, 25),
    ]  # fmt: skip
    split = time_split(Ratings.of(*zip(*rows, strict=True)), test_fraction=6 / 14)
    return SessionReplayEnv(split.eval, split.n_items, slate_size=2, slates=slates)


def test_a_session_replayed() -> None:
    env = small_env()
    observation, _ = env.reset()
    assert observation["time"] == 23 and observation["history"].tolist() == [0, 2, 7]
    assert sorted(observation["revealed"]) == [(20.0, 0), (21.0, 7), (22.0, 2)]
    assert observation["excluded"].tolist() == [0, 2, 7]
    assert "targets" not in observation
    observation, reward, terminated, truncated, info = env.step(np.array([3, 1]))
    assert reward == 1.0 and info["taken"].tolist() == [1.0, 0.0] and info["hits"] == [3]
    assert observation["revealed"] == [(23.0, 3)]  # when the user rated it, in the log
    assert observation["shown"] == [3, 1] and observation["taken"] == [3]
    assert not terminated and not truncated
    with pytest.raises(EnvError, match="rated or shown"):
        env.step(np.array([1, 5]))
    _, reward, terminated, _, _ = env.step(np.array([4, 5]))
    assert reward == 1.0 and terminated  # every target found
    with pytest.raises(EnvError, match="ended"):
        env.step(np.array([5, 6]))


def test_truncated_after_the_last_slate_and_bad_slates_refused() -> None:
    env = small_env(slates=1)
    env.reset()
    with pytest.raises(EnvError, match="distinct"):
        env.step(np.array([3, 3]))
    _, reward, terminated, truncated, _ = env.step(np.array([5, 6]))
    assert reward == 0.0 and truncated and not terminated
    assert env.reset()[0]["tick"] > 2  # the next session (here the same one again)
