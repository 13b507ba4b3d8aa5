"""The online agent learns: with updates it beats itself without, on the same seeds."""

from __future__ import annotations

import numpy as np
import pytest

from llmagentos import Agent
from llmagentos.exceptions import ConfigError
from llmagentos.recommend.agent import build_bandit_agent, build_ranking_agent, replay
from llmagentos.recommend.bandit import LinearPosterior
from llmagentos.recommend.baselines import ItemKNN
from llmagentos.recommend.data import Dataset
from llmagentos.recommend.env import SessionReplayEnv
from llmagentos.recommend.features import FEATURES
from llmagentos.recommend.metrics import mean_metrics, ranking_metrics, top_k


def test_posterior_update_by_hand() -> None:
    posterior = LinearPosterior([1.0, 0.0], prior_precision=2.0, noise=0.0)
    posterior.update(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), np.array([0.0, 1.0, 1.0]))
    # A = diag(2 + 1, 2 + 2); b = (2 * 1 + 0, 0 + 2): mean = (2/3, 1/2).
    assert posterior.precision.tolist() == [[3.0, 0.0], [0.0, 4.0]]
    assert posterior.mean() == pytest.approx([2 / 3, 1 / 2])
    assert posterior.sample(np.random.default_rng(0)) == pytest.approx([2 / 3, 1 / 2])
    noisy = LinearPosterior([0.0], prior_precision=4.0, noise=1.0)
    draws = [noisy.sample(np.random.default_rng(s))[0] for s in range(2000)]
    assert np.std(draws) == pytest.approx(0.5, rel=0.1)  # v^2 / lambda = 1/4
    with pytest.raises(ConfigError, match="features"):
        posterior.update(np.zeros((2, 3)), np.zeros(2))


@pytest.fixture(scope="module")
def setting(subset: Dataset) -> tuple[SessionReplayEnv, ItemKNN, np.ndarray]:
    split = subset.test
    model = ItemKNN(200).fit(split.train)
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    return SessionReplayEnv(split.eval, split.n_items), model, popularity


def test_updates_beat_no_updates_on_the_same_seeds(
    setting: tuple[SessionReplayEnv, ItemKNN, np.ndarray],
) -> None:
    env, model, popularity = setting
    assert env.sessions >= 80
    for seed in (0, 1):
        learner = build_bandit_agent(env, model, popularity, seed=seed)
        frozen = build_bandit_agent(env, model, popularity, seed=seed, learn=False)
        learned, fixed = replay(learner, seed=seed), replay(frozen, seed=seed)
        assert learned.hits_per_session > fixed.hits_per_session + 0.3, seed
        posterior = learner.planning_module.posterior
        assert posterior.updates == 10 * learner.total_steps  # every shown item, learned from
        weights = dict(zip(FEATURES, posterior.mean(), strict=True))
        # What it learned: more like what the user took, less like what they passed over.
        assert weights["taken"] > 0 > weights["skipped"]
        assert frozen.planning_module.posterior.updates == 0


def test_the_ranking_agent_reproduces_the_offline_metrics(
    setting: tuple[SessionReplayEnv, ItemKNN, np.ndarray],
) -> None:
    env, model, _ = setting
    users = env.users
    scores = model.score(users.history)
    agent = build_ranking_agent(env, scores, name="ItemKNN")
    assert isinstance(agent, Agent)
    run = replay(agent)
    # The first slate of each session is the model's top ten, rated items excluded...
    assert np.array_equal(run.first, top_k(scores, users.seen, 10))
    offline = mean_metrics(ranking_metrics(top_k(scores, users.seen, 10), users.targets))
    assert mean_metrics(ranking_metrics(run.first, users.targets)) == offline
    # ...and its first-slate hits are HR's numerator.
    assert np.mean(run.hits[:, 0] > 0) == pytest.approx(offline["HR@10"])
