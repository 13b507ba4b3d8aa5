"""TextMaze: dynamics, rewards, episode ends, seeding, text observations, registration."""

from __future__ import annotations

import warnings
from collections import deque

import pytest

from llmagentos.checks import check_env
from llmagentos.envs import make_env
from llmagentos.envs.text_maze import (
    ACTION_NAMES,
    LAYOUTS,
    TEXT_MAZE_IDS,
    TextMaze,
    register_text_mazes,
)
from llmagentos.exceptions import ConfigError
from llmagentos.registration import registry

NORTH, EAST, SOUTH, WEST = range(4)
MOVES = {NORTH: (-1, 0), EAST: (0, 1), SOUTH: (1, 0), WEST: (0, -1)}


def optimal_actions(env: TextMaze) -> list[int]:
    """A shortest action sequence from the start to the dock (breadth-first search)."""
    parents: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {env.start: None}
    queue = deque([env.start])
    while queue:
        cell = queue.popleft()
        for action, (dr, dc) in MOVES.items():
            nxt = (cell[0] + dr, cell[1] + dc)
            if nxt not in parents and env.is_open(nxt):
                parents[nxt] = (cell, action)
                queue.append(nxt)
    actions: list[int] = []
    cell = env.dock
    while (parent := parents[cell]) is not None:
        cell, action = parent
        actions.append(action)
    return actions[::-1]


def test_registered_ids_make_text_mazes_and_registration_is_idempotent() -> None:
    register_text_mazes()
    register_text_mazes()  # a second call (e.g. from builtins and from user code) is fine
    for env_id in TEXT_MAZE_IDS:
        assert env_id in registry.names("env")
        env = make_env(env_id)
        assert isinstance(env, TextMaze)
    large = make_env("TextMaze-Large-v0")
    assert (large.height, large.width, large.max_steps) == (8, 8, 100)
    assert make_env("TextMaze-v0", max_steps=7).max_steps == 7  # kwargs override the id's


@pytest.mark.parametrize("env_id", sorted(TEXT_MAZE_IDS))
def test_every_id_passes_check_env(env_id: str) -> None:
    register_text_mazes()
    check_env(make_env(env_id), steps=200)


def test_gymnasiums_own_checker_passes() -> None:
    from gymnasium.utils.env_checker import check_env as gymnasium_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns that an env made without gym.make has no spec
        gymnasium_check_env(TextMaze(render_mode="ansi"))


def test_observations_are_english_sentences_inside_the_text_space() -> None:
    env = TextMaze()
    observation, info = env.reset(seed=0)
    assert observation == (
        "You are at a corner. North: wall. East: open. South: open. West: wall. "
        "The charging dock is 4 steps south and 4 steps east."
    )
    assert info == {"position": [0, 0], "bumped": False, "steps": 0, "is_success": False}
    assert env.action_names == ACTION_NAMES == ("north", "east", "south", "west")
    assert env.action_space.n == 4
    for text in env.descriptions.values():
        assert env.observation_space.contains(text)
    assert env.describe(env.dock) == "You are at the charging dock."
    assert env.describe((3, 4)).endswith("The charging dock is 1 step south.")
    assert env.describe((4, 2)).endswith("The charging dock is 2 steps east.")
    kinds = {text.split(".")[0] for text in env.descriptions.values()}
    assert {"You are at a dead end", "You are at a corridor", "You are at a junction"} <= kinds


def test_with_the_hint_every_cell_has_its_own_sentence_without_it_cells_alias() -> None:
    for layout in LAYOUTS:
        texts = list(TextMaze(layout).descriptions.values())
        assert len(set(texts)) == len(texts)  # Markov states for a tabular learner
    blind = list(TextMaze(hint=False).descriptions.values())
    assert len(set(blind)) < len(blind)
    assert not any("dock is" in text for text in blind)


def test_steps_cost_one_and_moving_into_a_wall_costs_one_more_and_stays() -> None:
    env = TextMaze()
    start_text, _ = env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step(NORTH)  # the border
    assert (observation, reward, terminated, truncated) == (start_text, -2.0, False, False)
    assert info == {"position": [0, 0], "bumped": True, "steps": 1, "is_success": False}
    observation, reward, *_, info = env.step(EAST)
    assert reward == -1.0 and info["position"] == [0, 1] and not info["bumped"]
    assert observation == env.descriptions[(0, 1)]
    _, reward, *_, info = env.step(SOUTH)  # an inner wall
    assert reward == -2.0 and info["position"] == [0, 1]


def test_reaching_the_dock_pays_ten_and_terminates() -> None:
    env = TextMaze()
    env.reset(seed=0, options={"start": (3, 4)})
    observation, reward, terminated, truncated, _ = env.step(SOUTH)
    assert observation == "You are at the charging dock."
    assert (reward, terminated, truncated) == (9.0, True, False)  # -1 for the step, +10
    with pytest.raises(RuntimeError, match="reset"):
        env.step(SOUTH)


@pytest.mark.parametrize(("layout", "length"), [("small", 8), ("large", 14)])
def test_a_shortest_route_earns_the_best_return(layout: str, length: int) -> None:
    env = TextMaze(layout)
    env.reset(seed=0)
    assert env.distance_to_dock(env.start) == length
    actions = optimal_actions(env)
    assert len(actions) == length
    total, terminated = 0.0, False
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(action)
        total += reward
        assert not truncated
    assert terminated and total == -(length - 1) + 9.0


def test_the_time_limit_truncates() -> None:
    env = TextMaze(max_steps=3)
    env.reset(seed=0)
    flags = [env.step(NORTH)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    env.reset()
    assert env.steps == 0  # a reset starts the count again
    assert env.step(EAST)[3] is False


def test_rewards_are_configurable() -> None:
    env = TextMaze(step_reward=0.0, bump_reward=-5.0, dock_reward=1.0)
    env.reset(options={"start": (3, 4)})
    assert env.step(EAST)[1] == -5.0
    assert env.step(SOUTH)[1] == 1.0


def test_seeded_random_starts_are_deterministic_and_vary_with_the_seed() -> None:
    env = TextMaze(random_start=True)
    starts = {seed: env.reset(seed=seed)[1]["position"] for seed in range(20)}
    fresh = TextMaze(random_start=True)
    again = {seed: fresh.reset(seed=seed)[1]["position"] for seed in reversed(range(20))}
    assert starts == again
    assert len({tuple(p) for p in starts.values()}) > 3
    assert all(tuple(p) != env.dock and env.is_open(tuple(p)) for p in starts.values())
    fixed = TextMaze()
    assert {tuple(fixed.reset(seed=s)[1]["position"]) for s in range(5)} == {fixed.start}


def test_bad_actions_and_options_are_refused() -> None:
    env = TextMaze()
    env.reset(seed=0)
    for bad in (4, -1, 1.5, "east"):
        with pytest.raises(ValueError, match=r"not one of 0\.\.3"):
            env.step(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not an open cell"):
        env.reset(options={"start": (0, 3)})  # a wall


def test_layouts_are_validated() -> None:
    with pytest.raises(ConfigError, match="unknown layout"):
        TextMaze("huge")
    with pytest.raises(ConfigError, match="exactly one start"):
        TextMaze(["..D", "..."])
    with pytest.raises(ConfigError, match="cannot reach the dock"):
        TextMaze(["S#.", "##.", "..D"])
    with pytest.raises(ConfigError, match="equal length"):
        TextMaze(["S..", ".D"])
    with pytest.raises(ConfigError, match="max_steps"):
        TextMaze(max_steps=0)
    custom = TextMaze(["S.", ".D"])
    assert custom.layout_name == "custom" and custom.distance_to_dock(custom.start) == 2


def test_render_draws_an_ascii_map(capsys: pytest.CaptureFixture[str]) -> None:
    env = TextMaze()
    env.reset(seed=0)
    env.step(EAST)
    assert env.render() == "\n".join(
        [
            "+-----+",
            "|.R.#.|",
            "|.#...|",
            "|.###.|",
            "|...#.|",
            "|##..D|",
            "+-----+",
        ]
    )
    human = TextMaze(render_mode="human")
    human.reset(seed=0)
    assert human.render() is None
    assert "|R..#.|" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="render_mode"):
        TextMaze(render_mode="rgb_array")


def test_reaching_the_dock_is_reported_as_success() -> None:
    from llmagentos import Agent, ExecutionModule, PlanningModule
    from llmagentos.types import Decision

    env = TextMaze()
    route = optimal_actions(env)

    class Follow(PlanningModule):
        def decide(self, features: object) -> Decision:
            return Decision(route.pop(0))

    result = Agent(planning_module=Follow(), execution_module=ExecutionModule(env)).run(1, seed=0)
    assert result.episodes[0].success is True
    assert result.success_rate == 1.0
