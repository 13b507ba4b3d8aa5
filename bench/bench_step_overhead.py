"""Per-step overhead of the Agent around four trivial modules, against the least it can be.

The agent runs the seed loop ``action = agent.act(obs); obs, reward = agent.step(action)``.
The check compares it with the floor: an object whose ``act``/``step`` only forward to
the same four bound methods of the same module instances, the least any act/step API
can cost. A hand-written loop calling the four methods directly is shown too (info), as
are ``record_timings=True``, a no-op ``on_step`` listener and the async twins
``aact``/``astep`` awaited in one event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from _common import BenchResult, Case, Check, clock, interleave, ratio_text
from _modules import OBSERVATION, trivial_agent
from llmagentos import Agent
from llmagentos.types import StepRecord

NAME = "step_overhead"
TARGET = 1.3  # Agent / floor


def _ignore(record: StepRecord) -> None:
    """An ``on_step`` listener that does nothing."""


class Forwarder:
    """``act``/``step`` that only call the four bound methods: no checks, no bookkeeping."""

    def __init__(self, agent: Agent) -> None:
        self.perceive = agent.perception_module.perceive
        self.plan = agent.planning_module.plan
        self.execute = agent.execution_module.execute
        self.learn = agent.learning_module.learn

    def reset(self, *, seed: int | None = None) -> Any:
        return OBSERVATION

    def act(self, observation: Any) -> Any:
        return self.plan(self.perceive(observation))

    def step(self, action: Any) -> tuple[Any, float]:
        observation, reward = self.execute(action)
        self.learn(observation, reward)
        return observation, reward


def seed_loop(agent: Agent | Forwarder, steps: int) -> Case:
    def run() -> tuple[int, int]:
        obs = agent.reset(seed=0)
        start = clock()
        for _ in range(steps):
            action = agent.act(obs)
            obs, _reward = agent.step(action)
        return clock() - start, steps

    return run


def hand_loop(agent: Agent, steps: int) -> Case:
    perceive = agent.perception_module.perceive
    plan = agent.planning_module.plan
    execute = agent.execution_module.execute
    learn = agent.learning_module.learn

    def run() -> tuple[int, int]:
        obs: Any = OBSERVATION
        start = clock()
        for _ in range(steps):
            features = perceive(obs)
            action = plan(features)
            obs, reward = execute(action)
            learn(obs, reward)
        return clock() - start, steps

    return run


def async_loop(agent: Agent, steps: int, runner: asyncio.Runner) -> Case:
    async def batch() -> int:
        obs = await agent.areset(seed=0)
        start = clock()
        for _ in range(steps):
            action = await agent.aact(obs)
            obs, _reward = await agent.astep(action)
        return clock() - start

    def run() -> tuple[int, int]:
        return runner.run(batch()), steps

    return run


LABELS = {
    "agent": "Agent, seed loop (act/step)",
    "hand": "hand-written loop (info)",
    "timings": "Agent, record_timings=True",
    "listener": "Agent, no-op on_step listener",
    "async": "Agent, async twins (aact/astep)",
    "floor": "floor: act/step that only forward (baseline)",
}


def run(quick: bool) -> BenchResult:
    steps, repeats = (50_000, 7) if quick else (200_000, 21)
    agent = trivial_agent()
    with asyncio.Runner() as runner:
        cases = {
            "agent": seed_loop(agent, steps),
            "hand": hand_loop(agent, steps),
            "timings": seed_loop(trivial_agent(record_timings=True), steps),
            "listener": seed_loop(trivial_agent(on_step=[_ignore]), steps),
            "async": async_loop(trivial_agent(), steps, runner),
            "floor": seed_loop(Forwarder(agent), steps),
        }
        stats = interleave(cases, repeats=repeats, warmups=1)
    hand, floor = stats["hand"], stats["floor"]
    rows = []
    for key, label in LABELS.items():
        item = stats[key]
        target = "" if key in ("hand", "floor") else "(info)"
        if key == "agent":
            target = f"<= {TARGET:g} x floor"
        rows.append(
            [
                label,
                f"{item.median:,.0f}",
                f"{item.minimum:,.0f}",
                ratio_text(item.ratio_to(hand)),
                ratio_text(item.ratio_to(floor)),
                target,
            ]
        )
    over_hand = stats["agent"].ratio_to(hand)
    check = Check(
        name=NAME,
        measured=f"Agent {stats['agent'].median:,.0f} ns/step",
        baseline=f"floor {floor.median:,.0f} ns/step",
        ratio=stats["agent"].ratio_to(floor),
        target=TARGET,
        direction="<=",
        note=f"Agent / hand loop {ratio_text(over_hand)} (info), hand {hand.median:,.0f} ns/step",
    )
    return BenchResult(
        name=NAME,
        title=f"step_overhead: {steps:,} steps x {repeats} repeats, trivial seed-style modules",
        columns=[
            "loop",
            "median ns/step",
            "min ns/step",
            "ratio vs hand",
            "ratio vs floor",
            "target",
        ],
        rows=rows,
        checks=[check],
        params={"steps": steps, "repeats": repeats, "warmups": 1, "target": TARGET},
        data={key: {"label": LABELS[key], **item.to_dict()} for key, item in stats.items()},
        notes=[
            "ratio: median over repeats of (row ns/step / baseline ns/step in that repeat)",
            f"check: Agent / floor <= {TARGET:g}; Agent / hand loop {ratio_text(over_hand)} (info)",
        ],
    )
