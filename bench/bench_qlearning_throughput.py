"""Tabular Q-learning on Taxi-v4: the full Agent against a raw Gymnasium + NumPy loop.

Both learn from scratch every repeat (alpha 0.1, gamma 0.99, epsilon 0.1, seed 0) for
the same number of episodes, each on its own ``gymnasium.make("Taxi-v4")``. Their step
counts differ a little (different random streams and tie-breaking), so the comparison
is in environment steps per second. Making the agent or the env is not timed.
"""

from __future__ import annotations

import statistics
from typing import Any

import gymnasium
import numpy as np

from _common import BenchResult, Case, Check, clock, interleave, ratio_text
from llmagentos import Agent, ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from llmagentos.modules.perception import DiscreteExtractor
from llmagentos.rl import EpsilonGreedySelector, QLearning, QTable

NAME = "qlearning_throughput"
TARGET = 0.8
ENV_ID = "Taxi-v4"
ALPHA, GAMMA, EPSILON, SEED = 0.1, 0.99, 0.1, 0
N_STATES, N_ACTIONS = 500, 6


def make_agent() -> Agent:
    q = QTable(N_ACTIONS, N_STATES)
    return Agent(
        PerceptionModule(extractor=DiscreteExtractor()),
        PlanningModule(EpsilonGreedySelector(q, epsilon=EPSILON, seed=SEED)),
        ExecutionModule(ENV_ID),
        LearningModule(QLearning(q, alpha=ALPHA, gamma=GAMMA)),
    )


def raw_q_learning(env: Any, q: np.ndarray, rng: np.random.Generator, episodes: int) -> list[int]:
    """The same algorithm by hand; returns the length of every episode."""
    lengths = []
    for episode in range(episodes):
        state, _info = env.reset(seed=SEED if episode == 0 else None)
        length, done = 0, False
        while not done:
            if rng.random() < EPSILON:
                action = int(rng.integers(N_ACTIONS))
            else:
                action = int(np.argmax(q[state]))
            next_state, reward, terminated, truncated, _info = env.step(action)
            target = reward if terminated else reward + GAMMA * q[next_state].max()
            q[state, action] += ALPHA * (target - q[state, action])
            state, length, done = next_state, length + 1, terminated or truncated
        lengths.append(length)
    return lengths


def agent_case(episodes: int, lengths: dict[str, list[int]]) -> Case:
    def run() -> tuple[int, int]:
        agent = make_agent()
        start = clock()
        result = agent.run(episodes, seed=SEED)
        elapsed = clock() - start
        agent.close()
        lengths["agent"] = [episode.length for episode in result.episodes]
        return elapsed, result.total_steps

    return run


def raw_case(episodes: int, lengths: dict[str, list[int]]) -> Case:
    def run() -> tuple[int, int]:
        env = gymnasium.make(ENV_ID)
        q = np.zeros((N_STATES, N_ACTIONS))
        rng = np.random.default_rng(SEED)
        start = clock()
        lengths["raw"] = raw_q_learning(env, q, rng, episodes)
        elapsed = clock() - start
        env.close()
        return elapsed, sum(lengths["raw"])

    return run


LABELS = {"agent": "llmagentos Agent (full loop)", "raw": "raw Gymnasium + NumPy (baseline)"}


def run(quick: bool) -> BenchResult:
    episodes, repeats = (150, 3) if quick else (1_000, 9)
    lengths: dict[str, list[int]] = {}
    cases = {"agent": agent_case(episodes, lengths), "raw": raw_case(episodes, lengths)}
    stats = interleave(cases, repeats=repeats, warmups=1)
    rate = {key: 1e9 / item.median for key, item in stats.items()}
    best = {key: 1e9 / item.minimum for key, item in stats.items()}
    tail = max(1, episodes // 10)
    rows = [
        [
            label,
            f"{sum(lengths[key]):,}",
            f"{statistics.fmean(lengths[key][-tail:]):.1f}",
            f"{rate[key]:,.0f}",
            f"{best[key]:,.0f}",
            ratio_text(stats["raw"].ratio_to(stats[key])),
        ]
        for key, label in LABELS.items()
    ]
    ratio = stats["raw"].ratio_to(stats["agent"])
    check = Check(
        name=NAME,
        measured=f"Agent {rate['agent']:,.0f} steps/s",
        baseline=f"raw loop {rate['raw']:,.0f} steps/s",
        ratio=ratio,
        target=TARGET,
        direction=">=",
    )
    return BenchResult(
        name=NAME,
        title=f"qlearning_throughput: {ENV_ID}, {episodes:,} episodes x {repeats} repeats",
        columns=[
            "implementation",
            "steps/run",
            f"mean len, last {tail} ep",
            "median steps/s",
            "best steps/s",
            "ratio vs raw",
        ],
        rows=rows,
        checks=[check],
        params={
            "env": ENV_ID,
            "episodes": episodes,
            "repeats": repeats,
            "warmups": 1,
            "alpha": ALPHA,
            "gamma": GAMMA,
            "epsilon": EPSILON,
            "seed": SEED,
            "target": TARGET,
        },
        data={
            key: {"label": LABELS[key], "steps_per_s": rate[key], **stats[key].to_dict()}
            | {"episode_lengths": lengths[key]}
            for key in LABELS
        },
        notes=[
            f"ratio: median over repeats of (steps/s / raw steps/s in that repeat); "
            f"target >= {TARGET:g}"
        ],
    )
