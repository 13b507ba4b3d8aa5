"""Shared fixtures: small seed-style modules and a tabular agent factory."""

from __future__ import annotations

import os
from typing import Any

import pytest

from llmagentos import Agent, ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from llmagentos.llm.testing import block_network_models
from llmagentos.modules import DiscreteExtractor
from llmagentos.rl import EpsilonGreedySelector, QLearning, QTable

# The CLIs' tables are as wide as the terminal; the suite's workers have none, and a
# summary cut to 80 columns would hide what the tests read.
os.environ.setdefault("COLUMNS", "200")

pytest_plugins = ["tests.redis_server"]  # the redis_url fixture

# No test talks to a real network model unless it opts in with allow_network_models().
block_network_models()


class CountingPerception(PerceptionModule):
    """Seed-style perception that counts its calls."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def perceive(self, observation: Any) -> Any:
        self.calls.append(observation)
        return {"position": 0 if observation is None else observation}


class ForwardPlanning(PlanningModule):
    def plan(self, features: Any) -> Any:
        return 1


class CorridorExecution(ExecutionModule):
    """A corridor with no environment object: defines only the seed's execute()."""

    position = 0

    def execute(self, action: Any) -> tuple[Any, float]:
        self.position += action
        return self.position, float(action)


class RecordingLearning(LearningModule):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, float]] = []

    def learn(self, observation: Any, reward: float) -> None:
        self.seen.append((observation, reward))


def tabular_agent(env: str = "Taxi-v4", *, seed: int = 0, epsilon: Any = 0.1, **kw: Any) -> Agent:
    """A Q-learning agent on a discrete Gymnasium environment."""
    execution = ExecutionModule(env, **kw)
    space = execution.env
    q = QTable(int(space.action_space.n), int(space.observation_space.n))
    return Agent(
        PerceptionModule(extractor=DiscreteExtractor()),
        PlanningModule(EpsilonGreedySelector(q, epsilon=epsilon, seed=seed)),
        execution,
        LearningModule(QLearning(q, alpha=0.5, gamma=0.99)),
    )


@pytest.fixture
def seed_agent() -> Agent:
    return Agent(
        perception_module=CountingPerception(),
        planning_module=ForwardPlanning(),
        execution_module=CorridorExecution(),
        learning_module=RecordingLearning(),
    )


# The suite runs on pytest-xdist workers (scripts/test.sh, ``--dist loadgroup``). Each
# file's tests stay on one worker, so its module-scoped servers and models start once.
# Some sandbox tests count every sandboxed process or run cgroup on the machine, so
# the files that start sandboxes form one group, run on one worker one at a time.
SANDBOX_USERS = (
    "tests/sandbox/",
    "tests/codegen/",
    "tests/acceptance/test_codegen_smollm2.py",
    "tests/tools/test_executor.py",
    "tests/telemetry/test_memory_and_sandbox_spans.py",
)
# Files whose tests are long and share nothing: each test may go to any worker.
SPREAD = ("tests/distributed/test_ray_suite.py",)
# The longest groups, longest first (about 40-200 s each on two workers): handed out
# before the many short files so that no long one starts near the end and runs alone.
# scripts/test.sh passes --no-loadscope-reorder so xdist keeps this order.
LONGEST_FIRST = (
    *SANDBOX_USERS,
    *SPREAD,
    "tests/test_docs.py",
    "tests/durable/test_crash_resume.py",
    "tests/test_learning_targets.py",
    "tests/acceptance/test_main_job.py",
    "tests/llm/test_local_batching.py",
    "tests/durable/test_model_journal.py",
    "tests/test_cli.py",
    "tests/dashboard/test_dashboard_browser.py",
    "tests/service/test_module_service.py",
    "tests/gateway/test_failover.py",
    "tests/gateway/test_workers.py",
    "tests/telemetry/test_phoenix.py",
)


def _rank(where: str) -> int:
    return next(
        (i for i, prefix in enumerate(LONGEST_FIRST) if where.startswith(prefix)),
        len(LONGEST_FIRST),
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    for item in items:
        where = item.path.relative_to(root).as_posix()
        if where.startswith(SANDBOX_USERS):
            group = "sandbox"
        elif where in SPREAD:
            group = item.nodeid
        else:
            group = where
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: _rank(item.path.relative_to(root).as_posix()))  # stable
