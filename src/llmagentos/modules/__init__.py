"""The four module kinds and their seed sub-components."""

from llmagentos.modules.base import Component, Module, run_sync
from llmagentos.modules.execution import (
    ActionExecutor,
    EpisodeState,
    ExecutionModule,
    FeedbackCollector,
    PassThroughFeedback,
    StateManager,
)
from llmagentos.modules.learning import (
    EnvironmentReward,
    LearningModule,
    PolicyOptimizer,
    RewardFunction,
    ScaledReward,
)
from llmagentos.modules.perception import (
    BinningExtractor,
    DataCollector,
    DiscreteExtractor,
    FeatureExtractor,
    IdentityCollector,
    IdentityExtractor,
    IdentityPreprocessor,
    PerceptionModule,
    Preprocessor,
)
from llmagentos.modules.planning import (
    ActionSelector,
    DirectTaskPlanner,
    FixedGoal,
    GoalManager,
    GoalQueue,
    PlanningModule,
    TaskPlanner,
)

__all__ = [
    "ActionExecutor",
    "ActionSelector",
    "BinningExtractor",
    "Component",
    "DataCollector",
    "DirectTaskPlanner",
    "DiscreteExtractor",
    "EnvironmentReward",
    "EpisodeState",
    "ExecutionModule",
    "FeatureExtractor",
    "FeedbackCollector",
    "FixedGoal",
    "GoalManager",
    "GoalQueue",
    "IdentityCollector",
    "IdentityExtractor",
    "IdentityPreprocessor",
    "LearningModule",
    "Module",
    "PassThroughFeedback",
    "PerceptionModule",
    "PlanningModule",
    "PolicyOptimizer",
    "Preprocessor",
    "RewardFunction",
    "ScaledReward",
    "StateManager",
    "TaskPlanner",
    "run_sync",
]
