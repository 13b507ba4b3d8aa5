"""The online recommender's settings on the validation split (never the test users).

Runs the agent with and without updates (2 seeds each) over a grid of the sampling
scale ``v`` and prior precision ``λ``, then over the trend's half-life, on the
validation split that ``llmagentos recommend eval`` tunes EASE on; prints hits per
session in five slates. docs/recommend.md quotes its output. About 5 minutes.
"""

from __future__ import annotations

import itertools

import numpy as np

from llmagentos.recommend import (
    EASE,
    SessionReplayEnv,
    build_bandit_agent,
    build_ranking_agent,
    prepare,
    replay,
)
from llmagentos.recommend.agent import BanditSettings

SEEDS = (0, 1)


def main() -> None:
    data = prepare()
    split = data.validation
    ease = EASE(1000.0).fit(split.train)  # the λ validation chooses for EASE
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    env = SessionReplayEnv(split.eval, split.n_items)

    def hits(settings: BanditSettings, learn: bool) -> float:
        runs = [
            replay(
                build_bandit_agent(env, ease, popularity, settings=settings, learn=learn, seed=s),
                seed=s,
            ).hits_per_session
            for s in SEEDS
        ]
        return float(np.mean(runs))

    alone = replay(build_ranking_agent(env, ease.score(split.eval.history), name="EASE"))
    print(f"EASE alone: {alone.hits_per_session:.3f}")
    print("v     lambda  updated  no updates  gain")
    for noise, precision in itertools.product((0.05, 0.1, 0.2, 0.5), (0.1, 1.0, 10.0)):
        settings = BanditSettings(noise=noise, prior_precision=precision)
        a, b = hits(settings, True), hits(settings, False)
        print(f"{noise:<5g} {precision:<7g} {a:7.3f}  {b:10.3f}  {a - b:+.3f}")
    print("half-life (days)  updated")
    for days in (15.0, 30.0, 60.0, 120.0, 365.0):
        print(f"{days:<17g} {hits(BanditSettings(half_life_days=days), True):7.3f}")


if __name__ == "__main__":
    main()
