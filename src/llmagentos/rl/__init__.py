"""Tabular reinforcement learning: Q-table, TD control, selectors and schedules."""

from llmagentos.rl.qtable import QTable
from llmagentos.rl.schedules import Constant, Exponential, Linear, Schedule, as_schedule
from llmagentos.rl.selectors import (
    ActionValues,
    EpsilonGreedySelector,
    GreedySelector,
    RandomSelector,
    SoftmaxSelector,
)
from llmagentos.rl.td import ExpectedSarsa, QLearning, Sarsa, TemporalDifference

__all__ = [
    "ActionValues",
    "Constant",
    "EpsilonGreedySelector",
    "ExpectedSarsa",
    "Exponential",
    "GreedySelector",
    "Linear",
    "QLearning",
    "QTable",
    "RandomSelector",
    "Sarsa",
    "Schedule",
    "SoftmaxSelector",
    "TemporalDifference",
    "as_schedule",
]
