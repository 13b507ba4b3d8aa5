"""Build an Agent from a :class:`~llmagentos.config.RunConfig`.

The builder makes the environment, reads the sizes of its spaces, creates (or loads)
the shared Q-table, and asks the registry for each module, passing the context a
factory names in its signature: ``env``, ``q_table``, ``n_actions``, ``n_states``,
``observation_space``, ``action_space``, ``seed``, and ``epsilon`` (the planner's, for
learners such as Expected SARSA that follow the same policy). Every failure is a
:class:`~llmagentos.exceptions.ConfigError` naming the config field, raised before
anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from llmagentos.agent import Agent
from llmagentos.config import ModuleSpec, RunConfig
from llmagentos.envs.make import make_env
from llmagentos.exceptions import (
    ConfigError,
    EnvError,
    LLMAgentOSError,
    QTableError,
    RegistryError,
)
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.perception import PerceptionModule
from llmagentos.modules.planning import PlanningModule
from llmagentos.registration import registry
from llmagentos.rl.qtable import QTable

__all__ = ["BuiltAgent", "build_agent"]

M = TypeVar("M", PerceptionModule, PlanningModule, ExecutionModule, LearningModule)


@dataclass(slots=True)
class BuiltAgent:
    """An agent made from config, with the parts a run needs to save."""

    agent: Agent
    env: Any
    q_table: QTable | None


def _space_size(space: Any) -> int | None:
    return int(space.n) if type(space).__name__ == "Discrete" else None


def _make_module(kind: str, spec: ModuleSpec, context: dict[str, Any], cls: type[M]) -> M:
    field = f"agent.{kind}"
    try:
        module = registry.make(kind, spec.type, context, **spec.params)
    except RegistryError as err:
        raise ConfigError(f"{field}.type", str(err)) from err
    except ConfigError as err:
        sub = f"{field}.{err.field}" if err.field else field
        raise ConfigError(sub, err.problem) from err
    except LLMAgentOSError as err:
        raise ConfigError(field, str(err)) from err
    if not isinstance(module, cls):
        raise ConfigError(
            f"{field}.type", f"{spec.type!r} made a {type(module).__name__}, not a {kind} module"
        )
    return module


def build_agent(config: RunConfig) -> BuiltAgent:
    """Make the environment, the Q-table and the four modules; wire them into an Agent.

    Raises:
        ConfigError: the first problem, naming its field.
    """
    try:
        env = make_env(
            config.env.id, max_episode_steps=config.env.max_episode_steps, **config.env.kwargs
        )
    except RegistryError as err:
        raise ConfigError("env.id", str(err)) from err
    except (EnvError, ConfigError) as err:
        raise ConfigError("env", str(err)) from err

    action_space = getattr(env, "action_space", None)
    observation_space = getattr(env, "observation_space", None)
    n_actions = _space_size(action_space)
    seed = config.train.seed if config.train else (config.eval.seed if config.eval else None)
    context: dict[str, Any] = {
        "env": env,
        "action_space": action_space,
        "observation_space": observation_space,
        "n_actions": n_actions,
        "seed": seed,
        "agent": config.name,
    }
    perception_spec = config.agent.perception
    if perception_spec.type == "auto":
        if type(observation_space).__name__ == "Box":
            shape = getattr(observation_space, "shape", ())
            raise ConfigError(
                "agent.perception",
                f"the observation space Box{shape} is continuous: a Q-table needs discrete "
                'states, so use perception = { type = "binning", bins = 10 }',
            )
        kind = "discrete" if _space_size(observation_space) is not None else "identity"
        perception_spec = ModuleSpec(type=kind)
    perception = _make_module("perception", perception_spec, context, PerceptionModule)
    extractor = getattr(perception, "extractor", None)
    n_states = getattr(extractor, "n_states", None) or _space_size(observation_space)
    context["n_states"] = n_states

    q_table = None
    if n_actions is not None:
        q_table = _q_table(config, n_actions=n_actions, n_states=n_states)
        context["q_table"] = q_table
    planning_params = config.agent.planning.params
    if "epsilon" in planning_params:
        context["epsilon"] = planning_params["epsilon"]

    planning = _make_module("planning", config.agent.planning, context, PlanningModule)
    execution = _make_module("execution", config.agent.execution, context, ExecutionModule)
    learning = _make_module("learning", config.agent.learning, context, LearningModule)
    if q_table is not None and q_table.meta.get("counters"):
        counters = q_table.meta["counters"]
        for module in (planning, learning):
            for component in module.components():
                component.load_state_dict(counters)
    agent = Agent(perception, planning, execution, learning, name=config.name)
    return BuiltAgent(agent=agent, env=env, q_table=q_table)


def _q_table(config: RunConfig, *, n_actions: int, n_states: int | None) -> QTable:
    if config.resume is None:
        return QTable(n_actions, n_states, initial=config.agent.q_initial)
    try:
        table = QTable.load(config.resume)
        table.check_fits(n_actions=n_actions, n_states=n_states)
    except QTableError as err:
        raise ConfigError("resume", str(err)) from err
    return table
