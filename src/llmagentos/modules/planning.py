"""Planning: goal manager, task planner, action selector (seed, section 3.3)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from llmagentos.exceptions import ModuleError
from llmagentos.modules.base import Component, Module, only_components, run_sync
from llmagentos.types import Action, Decision, Features

__all__ = [
    "ActionSelector",
    "DirectTaskPlanner",
    "FixedGoal",
    "GoalManager",
    "GoalQueue",
    "PlanningModule",
    "TaskPlanner",
]


@runtime_checkable
class GoalManager(Protocol):
    """Keeps the agent's current goal."""

    def goal(self, features: Features) -> Any: ...


@runtime_checkable
class TaskPlanner(Protocol):
    """Breaks the current goal into the task to work on now."""

    def task(self, goal: Any, features: Features) -> Any: ...


@runtime_checkable
class ActionSelector(Protocol):
    """Chooses the action for the current features and task.

    ``explore`` is ``False`` in evaluation: selectors then act greedily.
    """

    def select(self, features: Features, task: Any = None, *, explore: bool = True) -> Decision: ...


class FixedGoal(Component):
    """One goal for the whole run (``None`` when the task has no explicit goal)."""

    def __init__(self, goal: Any = None) -> None:
        self._goal = goal

    def goal(self, features: Features) -> Any:
        return self._goal


class GoalQueue(Component):
    """Goals pursued in order; moves to the next when ``achieved(goal, features)`` says so.

    Args:
        goals: the goals, in order.
        achieved: predicate telling whether a goal is met given the current features.
    """

    def __init__(self, goals: Sequence[Any], achieved: Callable[[Any, Features], bool]) -> None:
        if not goals:
            raise ModuleError("planning", "GoalQueue needs at least one goal", value=goals)
        self.goals = list(goals)
        self.achieved = achieved
        self.index = 0

    def reset(self, *, seed: int | None = None) -> None:
        self.index = 0

    def goal(self, features: Features) -> Any:
        while self.index < len(self.goals) - 1 and self.achieved(self.goals[self.index], features):
            self.index += 1
        return self.goals[self.index]

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = int(state.get("index", 0))


class DirectTaskPlanner(Component):
    """The goal itself is the task (the right default for single-step decisions)."""

    def task(self, goal: Any, features: Features) -> Any:
        return goal


_NO_GOAL = FixedGoal()
_GOAL_AS_TASK = DirectTaskPlanner()


class PlanningModule(Module):
    """Chooses actions from features.

    Override :meth:`plan` (the seed's method), :meth:`decide` (the full form that also
    returns a reason and scores), or one of their async twins. Otherwise the module runs
    its components: ``goal_manager.goal`` -> ``task_planner.task`` ->
    ``selector.select``.

    Args:
        selector: the action selector (required unless a method is overridden).
        goal_manager: keeps the goal (default: no explicit goal).
        task_planner: turns the goal into a task (default: the goal itself).
    """

    kind = "planning"
    _twin_names = ("plan", "decide", "aplan", "adecide")

    goal_manager: GoalManager = _NO_GOAL
    task_planner: TaskPlanner = _GOAL_AS_TASK
    selector: ActionSelector | None = None

    def __init__(
        self,
        selector: ActionSelector | None = None,
        *,
        goal_manager: GoalManager | None = None,
        task_planner: TaskPlanner | None = None,
    ) -> None:
        if selector is not None:
            self.selector = selector
        if goal_manager is not None:
            self.goal_manager = goal_manager
        if task_planner is not None:
            self.task_planner = task_planner

    def components(self) -> Iterable[Component]:
        return only_components(self.goal_manager, self.task_planner, self.selector)

    def _run_components(self, features: Features) -> Decision:
        selector = self.selector
        if selector is None:
            raise ModuleError(
                "planning",
                f"{type(self).__name__} has no action selector: pass selector=... "
                "or override plan()",
            )
        goals, tasks = self.goal_manager, self.task_planner
        if goals is _NO_GOAL and tasks is _GOAL_AS_TASK:  # the defaults: no task to work out
            return selector.select(features, None, explore=self.training)
        return selector.select(
            features, tasks.task(goals.goal(features), features), explore=self.training
        )

    def plan(self, features: Features) -> Action:
        """Return the action to take for ``features`` (the seed's method)."""
        overrides = self._overrides
        if "decide" in overrides:
            return self.decide(features).action
        if "adecide" in overrides or "aplan" in overrides:
            return run_sync(self.aplan(features))
        return self._run_components(features).action

    def decide(self, features: Features) -> Decision:
        """Return the action with the planner's reason and scores."""
        overrides = self._overrides
        if "plan" in overrides:
            return Decision(self.plan(features))
        if "adecide" in overrides or "aplan" in overrides:
            return run_sync(self.adecide(features))
        return self._run_components(features)

    async def aplan(self, features: Features) -> Action:
        """Async twin of :meth:`plan`."""
        overrides = self._overrides
        if "adecide" in overrides:
            return (await self.adecide(features)).action
        if "plan" in overrides or "decide" in overrides:
            return self.plan(features)
        return self._run_components(features).action

    async def adecide(self, features: Features) -> Decision:
        """Async twin of :meth:`decide`."""
        overrides = self._overrides
        if "aplan" in overrides:
            return Decision(await self.aplan(features))
        if "decide" in overrides or "plan" in overrides:
            return self.decide(features)
        return self._run_components(features)


PlanningModule._kind_base = PlanningModule
