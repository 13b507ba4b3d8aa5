"""Conformance checkers: does an environment or a module keep its contract?

Both raise :class:`~llmagentos.exceptions.CheckError` at the first violation, with a
message saying what was expected and what came back; they return ``None`` when
everything holds. Run them in your own tests when you write a module or an
environment, as you would Gymnasium's ``check_env``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llmagentos._json import jsonable
from llmagentos.exceptions import CheckError
from llmagentos.modules.base import Module, run_sync
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.perception import PerceptionModule
from llmagentos.modules.planning import PlanningModule
from llmagentos.types import Decision, Outcome, Transition

__all__ = ["check_env", "check_module"]


def _json_form(target: str, what: str, value: Any) -> Any:
    """The JSON form of ``value`` (what crosses a service boundary), or a CheckError."""
    try:
        return json.loads(json.dumps(jsonable(value)))
    except (TypeError, ValueError) as err:
        raise CheckError(target, f"{what} is not serializable data: {err}") from err


def _is_number(value: Any) -> bool:
    try:
        return not isinstance(value, bool | str) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _in_space(space: Any, value: Any) -> bool:
    return space is None or bool(space.contains(value))


def check_env(env: Any, *, steps: int = 20, seed: int = 0) -> None:
    """Check that ``env`` keeps Gymnasium's contract.

    Checks: ``reset`` and ``step`` exist; ``reset(seed=, options=)`` returns
    ``(observation, info)`` with a dict ``info`` and an observation inside
    ``observation_space``; the same seed gives the same first observation; ``step``
    returns a five-tuple with a finite numeric reward, boolean ``terminated`` and
    ``truncated``, a dict ``info``, and an observation inside the space; observations
    are serializable data.

    Args:
        env: the environment object (use :func:`~llmagentos.envs.make_env` for an id).
        steps: how many random steps to take.
        seed: the seed for ``reset`` and the action sampling.

    Raises:
        CheckError: the first violation found.
    """
    target = f"environment {type(env).__name__}"
    for method in ("reset", "step"):
        if not callable(getattr(env, method, None)):
            raise CheckError(target, f"has no {method}() method")
    action_space = getattr(env, "action_space", None)
    observation_space = getattr(env, "observation_space", None)
    if action_space is None:
        raise CheckError(target, "has no action_space")

    def reset() -> Any:
        result = env.reset(seed=seed, options=None)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise CheckError(target, f"reset() must return (observation, info), got {result!r:.80}")
        observation, info = result
        if not isinstance(info, dict):
            raise CheckError(target, f"reset() info must be a dict, got {type(info).__name__}")
        if not _in_space(observation_space, observation):
            raise CheckError(
                target,
                f"reset() observation {observation!r:.60} is outside "
                f"observation_space {observation_space}",
            )
        return observation

    first = _json_form(target, "the reset observation", reset())
    if _json_form(target, "the reset observation", reset()) != first:
        raise CheckError(target, f"reset(seed={seed}) is not deterministic")
    if hasattr(action_space, "seed"):
        action_space.seed(seed)
    for index in range(steps):
        action = action_space.sample()
        result = env.step(action)
        if not (isinstance(result, tuple) and len(result) == 5):
            raise CheckError(
                target,
                f"step() must return (observation, reward, terminated, "
                f"truncated, info), got {result!r:.80}",
            )
        observation, reward, terminated, truncated, info = result
        where = f"step {index}"
        if not _is_number(reward):
            raise CheckError(target, f"{where}: reward {reward!r} is not a finite number")
        for name, flag in (("terminated", terminated), ("truncated", truncated)):
            if not isinstance(flag, bool) and type(flag).__name__ != "bool_":
                raise CheckError(target, f"{where}: {name} must be a bool, got {flag!r}")
        if not isinstance(info, dict):
            raise CheckError(target, f"{where}: info must be a dict, got {type(info).__name__}")
        if not _in_space(observation_space, observation):
            raise CheckError(
                target,
                f"{where}: observation {observation!r:.60} is outside "
                f"observation_space {observation_space}",
            )
        _json_form(target, f"the {where} observation", observation)
        if terminated or truncated:
            reset()


def check_module(module: Any, *, sample: Any = None, seed: int = 0) -> None:
    """Check that ``module`` keeps the contract of its kind.

    Checks: it is one of the four module kinds; ``reset`` works; the seed method and its
    full form agree, and so do their async twins (after reseeding); what goes in and out
    is serializable data, so the module can later run behind HTTP.

    Args:
        module: a perception, planning, execution or learning module.
        sample: one input of the module's kind: an observation (perception), features
            (planning), an action (execution; default: sampled from the environment's
            action space) or a :class:`~llmagentos.types.Transition` (learning).
        seed: the seed used for every reset.

    Raises:
        CheckError: the first violation found.
    """
    if not isinstance(module, Module):
        raise CheckError(
            f"{type(module).__name__}",
            "is not a llmagentos module "
            "(subclass PerceptionModule, PlanningModule, ExecutionModule or "
            "LearningModule)",
        )
    target = f"{module.kind} module {type(module).__name__}"
    if isinstance(module, PerceptionModule):
        _check_perception(module, target, sample, seed)
    elif isinstance(module, PlanningModule):
        _check_planning(module, target, sample, seed)
    elif isinstance(module, ExecutionModule):
        _check_execution(module, target, sample, seed)
    elif isinstance(module, LearningModule):
        _check_learning(module, target, sample, seed)
    else:
        raise CheckError(target, "is not one of the four module kinds")


def _need(target: str, sample: Any, what: str) -> Any:
    if sample is None:
        raise CheckError(target, f"pass sample=<{what}> to check this module")
    return sample


def _check_perception(module: PerceptionModule, target: str, sample: Any, seed: int) -> None:
    observation = _need(target, sample, "an observation")
    _json_form(target, "the sample observation", observation)
    module.reset(seed=seed)
    features = _json_form(target, "perceive() output", module.perceive(observation))
    run_sync(module.areset(seed=seed))
    again = _json_form(target, "aperceive() output", run_sync(module.aperceive(observation)))
    if again != features:
        raise CheckError(
            target, f"aperceive() gave {again!r:.60} but perceive() gave {features!r:.60}"
        )


def _check_planning(module: PlanningModule, target: str, sample: Any, seed: int) -> None:
    features = _need(target, sample, "features")
    module.reset(seed=seed)
    action = _json_form(target, "plan() output", module.plan(features))
    module.reset(seed=seed)
    decision = module.decide(features)
    if not isinstance(decision, Decision):
        raise CheckError(target, f"decide() must return a Decision, got {decision!r:.60}")
    _json_form(target, "decide() output", decision.to_dict())
    if decision.reason is not None and not isinstance(decision.reason, str):
        raise CheckError(target, f"a decision's reason must be a string, got {decision.reason!r}")
    if _json_form(target, "decide() action", decision.action) != action:
        raise CheckError(target, "plan() and decide() chose different actions from one seed")
    run_sync(module.areset(seed=seed))
    async_action = _json_form(target, "aplan() output", run_sync(module.aplan(features)))
    if async_action != action:
        raise CheckError(target, "aplan() and plan() chose different actions from one seed")


def _check_execution(module: ExecutionModule, target: str, sample: Any, seed: int) -> None:
    first = _json_form(target, "reset() observation", module.reset(seed=seed))
    action = sample
    if action is None:
        space = getattr(module.env, "action_space", None)
        if space is None:
            raise CheckError(target, "pass sample=<an action> (no action space to sample from)")
        space.seed(seed)
        action = space.sample()
    result = module.execute(action)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CheckError(target, f"execute() must return (observation, reward), got {result!r:.60}")
    observation, reward = result
    if not _is_number(reward):
        raise CheckError(target, f"execute() reward {reward!r} is not a finite number")
    _json_form(target, "execute() observation", observation)
    if _json_form(target, "reset() observation", module.reset(seed=seed)) != first:
        raise CheckError(target, f"reset(seed={seed}) is not deterministic")
    outcome = module.perform(action)
    if not isinstance(outcome, Outcome):
        raise CheckError(target, f"perform() must return an Outcome, got {outcome!r:.60}")
    _json_form(target, "perform() outcome", outcome.to_dict())
    if _json_form(target, "perform() observation", outcome.observation) != _json_form(
        target, "execute() observation", observation
    ):
        raise CheckError(target, "perform() and execute() disagree after the same seed")
    run_sync(module.areset(seed=seed))
    async_observation, _ = run_sync(module.aexecute(action))
    if _json_form(target, "aexecute() observation", async_observation) != _json_form(
        target, "execute() observation", observation
    ):
        raise CheckError(target, "aexecute() and execute() disagree after the same seed")


def _check_learning(module: LearningModule, target: str, sample: Any, seed: int) -> None:
    transition = _need(target, sample, "a Transition")
    if not isinstance(transition, Transition):
        raise CheckError(target, f"sample must be a Transition, got {type(transition).__name__}")
    _json_form(target, "the sample transition", transition.to_dict())
    module.reset(seed=seed)
    report = module.update(transition)
    if report is not None and not isinstance(report, dict):
        raise CheckError(target, f"update() must return a dict or None, got {report!r:.60}")
    _json_form(target, "update() report", report)
    async_report = run_sync(module.aupdate(transition))
    _json_form(target, "aupdate() report", async_report)
