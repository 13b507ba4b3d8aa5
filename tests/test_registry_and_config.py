"""Naming things in config: the registry, config files, and the builder's errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmagentos import PlanningModule, registry
from llmagentos.build import build_agent
from llmagentos.config import load_config, parse_config
from llmagentos.exceptions import ConfigError, RegistryError
from llmagentos.registration import Registry
from llmagentos.rl import EpsilonGreedySelector, QLearning
from llmagentos.types import Decision


def test_builtin_names_are_registered_per_kind() -> None:
    assert {"q_learning", "sarsa", "expected_sarsa", "none"} <= set(registry.names("learning"))
    assert {"epsilon_greedy", "greedy", "softmax", "random"} <= set(registry.names("planning"))
    assert "env" in registry.names("execution")
    assert {"discrete", "identity", "binning"} <= set(registry.names("perception"))


def test_unknown_names_list_close_matches() -> None:
    with pytest.raises(RegistryError) as caught:
        registry.get("learning", "qlearning")
    assert caught.value.suggestions[0] == "q_learning"
    assert str(caught.value) == "unknown learning module 'qlearning'; did you mean 'q_learning'?"


def test_import_paths_and_context_injection() -> None:
    local = Registry()
    local.register("planning", "const", lambda *, n_actions: PlanningModule(_Fixed(n_actions)))
    made = local.make("planning", "const", {"n_actions": 4, "unused": 1})
    assert made.plan(None) == 3
    cls = local.get("planning", "llmagentos.modules.planning:PlanningModule")
    assert cls is PlanningModule
    with pytest.raises(ValueError, match="already registered"):
        local.register("planning", "const", PlanningModule)
    with pytest.raises(ConfigError, match="takes no parameter 'bogus'"):
        local.make("planning", "const", {"n_actions": 2}, bogus=1)


class _Fixed:
    def __init__(self, n: int) -> None:
        self.n = n

    def select(self, features: Any, task: Any = None, *, explore: bool = True) -> Decision:
        return Decision(self.n - 1)


def _base(**agent: Any) -> dict[str, Any]:
    return {"env": {"id": "Taxi-v4"}, "agent": agent, "train": {"episodes": 1}}


def test_builder_wires_one_q_table_into_planner_and_learner() -> None:
    built = build_agent(
        parse_config(
            _base(planning={"type": "epsilon_greedy", "epsilon": 0.2}, learning="q_learning")
        )
    )
    selector = built.agent.planning_module.selector
    optimizer = built.agent.learning_module.optimizer
    assert isinstance(selector, EpsilonGreedySelector) and isinstance(optimizer, QLearning)
    assert selector.q is optimizer.q is built.q_table
    assert built.q_table is not None and (len(built.q_table), built.q_table.n_actions) == (500, 6)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"env": {"id": "Taxi-v4"}, "trian": {}}, "trian: unknown field"),
        ({"agent": {}}, "env: required field is missing"),
        ({"env": {"id": "Taxi-v4"}, "train": {"episodes": -1}}, "train.episodes: Input should be"),
        ({"env": {"id": "Taxy-v4"}}, "env.id: unknown environment 'Taxy-v4'; did you mean"),
        (_base(learning="qlearn"), "agent.learning.type: unknown learning module 'qlearn'"),
        (
            _base(learning={"type": "q_learning", "alpha": {"type": "linear"}}),
            "agent.learning.alpha",
        ),
        (_base(learning={"type": "q_learning", "gamma": 1.5}), "agent.learning.gamma: must be"),
        (
            _base(planning={"type": "epsilon_greedy", "epsilon": {"type": "cos"}}),
            "agent.planning.epsilon.type: must be one of",
        ),
        (
            _base(learning={"type": "q_learning", "lr": 0.1}),
            "agent.learning.lr: learning 'q_learning' takes no parameter 'lr'",
        ),
        (
            _base(planning="llmagentos.modules.learning:LearningModule"),
            "agent.planning.type: 'llmagentos.modules.learning:LearningModule' made a Learning",
        ),
        ({**_base(), "resume": "/nonexistent/q.json"}, "resume: /nonexistent/q.json: no such file"),
        (
            _base(learning={"type": "q_learning", "alpha": -1}),
            "agent.learning.alpha: must be in (0, 1] (got -1)",
        ),
        (
            _base(
                planning={
                    "type": "epsilon_greedy",
                    "epsilon": {"type": "linear", "start": 1.5, "end": 0.1, "duration": 9},
                }
            ),
            "agent.planning.epsilon.start: must be in [0, 1] (got 1.5)",
        ),
        (
            {"env": {"id": "CartPole-v1"}},
            "agent.perception: the observation space Box(4,) is continuous",
        ),
    ],
)
def test_bad_config_gives_one_line_naming_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_agent(parse_config(data))
    text = str(caught.value)
    assert message in text, text
    assert "\n" not in text


def test_config_files_in_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text('name = "t"\n[env]\nid = "FrozenLake-v1"\n[train]\nepisodes = 3\n')
    yaml = tmp_path / "a.yaml"
    yaml.write_text("name: t\nenv:\n  id: FrozenLake-v1\ntrain:\n  episodes: 3\n")
    assert load_config(toml) == load_config(yaml)
    (tmp_path / "bad.toml").write_text("[env\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "bad.yaml").write_text("env: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"use a \.toml"):
        load_config(tmp_path / "a.json")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
