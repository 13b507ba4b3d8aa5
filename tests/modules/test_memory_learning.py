"""Learning that writes lessons to memory, perception that recalls them, a planner using them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmagentos import Agent
from llmagentos.envs.maze_layouts import random_layout
from llmagentos.envs.text_maze import TextMaze
from llmagentos.exceptions import BudgetExceeded
from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import ModelRequest, ModelResponse, Usage
from llmagentos.memory import MemoryManager
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.llm_planning import prompt_parts_of
from llmagentos.modules.memory_learning import MemoryLearning
from llmagentos.modules.memory_lessons import Lesson, StepSeen, distill
from llmagentos.modules.memory_perception import MemoryPerception, Recalled, state_digest
from llmagentos.modules.memory_planning import MemoryPlanningModule

ENV = "TextMaze-v0"
ORDER = ("south", "east", "west", "north")


def south_first(request: ModelRequest) -> str:
    """A model that says south whenever its schema lets it (then east, west, north)."""
    allowed = request.output_schema["properties"]["action"]["enum"]  # type: ignore[index]
    action = next(a for a in ORDER if a in allowed)
    return json.dumps({"reason": "south looks best", "action": action})


def always(name: str) -> FunctionModel:
    def answer(request: ModelRequest) -> str:
        allowed = request.output_schema["properties"]["action"]["enum"]  # type: ignore[index]
        action = name if name in allowed else allowed[0]
        return json.dumps({"reason": f"{action} it is", "action": action})

    return FunctionModel(answer)


@pytest.fixture
def manager(tmp_path: Path) -> MemoryManager:
    m = MemoryManager(tmp_path / "memory.db", embedder="hash:256")
    yield m
    m.close()


def make_agent(
    manager: MemoryManager, model: FunctionModel, *, agent: str = "robot", learn: bool = True,
    rules: bool = True, **learning: Any,
) -> Agent:  # fmt: skip
    env = TextMaze("small", max_steps=20)
    memory = manager.for_agent(agent, tenant="t")
    planner = MemoryPlanningModule(
        model, env.action_names, rules=rules, seed=0, **prompt_parts_of(env)
    )
    learner = (
        MemoryLearning(memory, env=ENV, action_names=env.action_names, **learning)
        if learn
        else LearningModule()
    )
    perception = MemoryPerception(memory, where={"env": ENV})
    return Agent(perception, planner, ExecutionModule(env), learner)


START = TextMaze("small").descriptions[(0, 0)]  # north and west are walls


def test_the_learner_writes_the_lesson_it_should(manager: MemoryManager) -> None:
    # Rules off: the planner repeats its mistake, so the second episode teaches the same.
    agent = make_agent(manager, always("north"), rules=False, metadata={"layout": "small"})
    result = agent.run_episode(seed=0)
    assert not result.succeeded
    skills = manager.for_agent("robot", tenant="t").skills
    [item] = skills.list()
    assert item.text == f"At {json.dumps(START)}, moving north hit a wall."
    assert item.namespace.kind == "skill"
    assert item.metadata | {"episodes": None} == {
        "lesson": "blocked", "state": state_digest(START), "action": "north", "action_index": 0,
        "env": ENV, "outcome": "time_limit", "episode": "run:ep0", "layout": "small",
        "what": "moving north hit a wall", "episodes": None,
    }  # fmt: skip
    assert item.key == f"{ENV}|{state_digest(START)}|north|blocked"
    episodic = manager.for_agent("robot", tenant="t").episodic.list()
    assert [e.metadata["outcome"] for e in episodic] == ["time_limit"]
    assert episodic[0].key == f"{ENV}|run:ep0|summary"
    # The same lesson learned again replaces itself: one item, the same id.
    agent.run_episode(seed=0)
    [again] = skills.list()
    assert again.id == item.id
    assert again.metadata["episode"] == "run:ep1"


def test_a_rerun_of_the_same_episodes_adds_nothing(manager: MemoryManager) -> None:
    for _ in range(2):  # the same run again: the same keys
        agent = make_agent(manager, FunctionModel(south_first))
        agent.run(3, seed=0)
    memory = manager.for_agent("robot", tenant="t")
    assert memory.episodic.count() == 3
    loops = [i for i in memory.skills.list() if i.metadata["lesson"] == "loop"]
    assert all(len(i.metadata["episodes"]) == len(set(i.metadata["episodes"])) for i in loops)
    texts = [i.text for i in memory.skills.list()]
    assert len(texts) == len(set(texts))


def test_the_planner_prompt_holds_the_recalled_lesson(manager: MemoryManager) -> None:
    model = always("north")
    agent = make_agent(manager, model)
    agent.run_episode(seed=0)
    features = agent.perception_module.perceive(START)
    assert isinstance(features, Recalled)
    assert [Lesson.of(i).effect for i in features.here] == ["blocked"]  # type: ignore[union-attr]
    planner = agent.planning_module
    assert isinstance(planner, MemoryPlanningModule)
    prompt = planner.prompt(features)
    assert prompt.startswith(START)
    assert prompt.endswith("\nLessons from earlier trials here: moving north hit a wall.")
    model.requests.clear()
    planner.decide(features)
    assert "moving north hit a wall" in (model.requests[0].messages[-1].content or "")


def test_an_empty_memory_leaves_the_llm_planners_prompt_unchanged(manager: MemoryManager) -> None:
    agent = make_agent(manager, always("north"))
    planner = agent.planning_module
    features = agent.perception_module.perceive(START)
    assert planner.prompt(features) == START


def test_the_rule_avoids_the_bad_action_and_names_the_lesson(manager: MemoryManager) -> None:
    model = always("north")
    agent = make_agent(manager, model, online=False)  # one lesson, from the episode's end
    agent.run_episode(seed=0)
    [lesson] = manager.for_agent("robot", tenant="t").skills.list()
    model.requests.clear()
    decision = agent.planning_module.decide(agent.perception_module.perceive(START))
    assert decision.action != 0  # not north
    assert decision.reason is not None
    assert decision.reason.startswith(f"memory veto: not north (#{lesson.id[:8]} north blocked)")
    # Asked twice: the second time north is not in the reply's schema.
    enums = [r.output_schema["properties"]["action"]["enum"] for r in model.requests]  # type: ignore[index]
    assert enums == [["north", "east", "south", "west"], ["east", "south", "west"]]


def test_without_rules_the_lesson_only_reaches_the_prompt(manager: MemoryManager) -> None:
    model = always("north")
    agent = make_agent(manager, model, rules=False, online=False)
    agent.run_episode(seed=0)
    decision = agent.planning_module.decide(agent.perception_module.perceive(START))
    assert decision.action == 0  # the model ignored the lesson; nothing overrode it
    assert decision.reason is not None and "north blocked" in decision.reason
    assert agent.planning_module.counts["against_lessons"] == 1


def test_lessons_are_not_recalled_by_another_agent(manager: MemoryManager) -> None:
    make_agent(manager, always("north"), agent="a").run_episode(seed=0)
    a = MemoryPerception(manager.for_agent("a", tenant="t"), where={"env": ENV}).perceive(START)
    b = MemoryPerception(manager.for_agent("b", tenant="t"), where={"env": ENV}).perceive(START)
    other = MemoryPerception(manager.for_agent("a", tenant="u"), where={"env": ENV}).perceive(START)
    assert len(a.here) == 1
    assert b.here == () and other.here == ()
    wrong_env = MemoryPerception(manager.for_agent("a", tenant="t"), where={"env": "other"})
    assert wrong_env.perceive(START).here == ()


def test_a_loop_blames_the_step_that_went_back_and_each_lap_one_more() -> None:
    steps = [
        StepSeen("A", 1, -1.0, "B"),
        StepSeen("B", 1, -1.0, "C"),
        StepSeen("C", 3, -1.0, "B"),  # back to B: this step is blamed
        StepSeen("B", 1, -1.0, "C"),  # round again: the lap's earliest unblamed step
        StepSeen("C", 3, -1.0, "B"),  # every step of the lap blamed: nothing new
        StepSeen("B", 1, -1.0, "C", truncated=True),
    ]
    lessons = distill(steps, env="e", action_names=ORDER, episode="x")
    assert [(lesson.metadata["lesson"], lesson.text) for lesson in lessons] == [
        ("loop", 'At "C", moving north led in a loop back to an earlier state (2 steps).'),
        ("loop", 'At "B", moving east led in a loop back to an earlier state (2 steps).'),
    ]


def test_a_success_is_remembered_as_a_route_and_followed(manager: MemoryManager) -> None:
    model = always("east")  # from (0, 0): east, east, then a wall at (0, 3)
    env = TextMaze(("S.D",), max_steps=5)
    memory = manager.for_agent("r", tenant="t")
    planner = MemoryPlanningModule(model, env.action_names, **prompt_parts_of(env))
    perception = MemoryPerception(memory)
    learner = MemoryLearning(memory, env="line", action_names=env.action_names)
    agent = Agent(perception, planner, ExecutionModule(env), learner)
    assert agent.run_episode(seed=0).succeeded
    routes = {i.metadata["steps_to_goal"] for i in memory.skills.list()}
    assert routes == {1, 2}
    model.requests.clear()
    decision = planner.decide(perception.perceive(env.descriptions[(0, 0)]))
    assert decision.action == 1
    assert decision.reason is not None and decision.reason.startswith("memory: follow #")
    assert model.requests == []  # followed without asking the model


@pytest.mark.parametrize("online", [False, True])
def test_with_memory_the_agent_improves_across_trials_and_without_it_does_not(
    manager: MemoryManager, online: bool
) -> None:
    trials = 7
    runs = {}
    for arm in ("control", "memory"):
        agent = make_agent(
            manager, FunctionModel(south_first), agent=arm, learn=arm == "memory", online=online
        )
        runs[arm] = agent.run(trials, seed=3).episodes
    # South from the start runs into a wall at (3, 0): the control does so every trial.
    assert [e.succeeded for e in runs["control"]] == [False] * trials
    memory = runs["memory"]
    if online:  # a wall or a loop is avoided as soon as it is met: the dock in trial 1,
        assert all(e.succeeded for e in memory)  # then the remembered route, shorter
        assert memory[-1].length < memory[0].length
    else:  # learned at each trial's end: the same first trial, then a route followed
        assert memory[0].succeeded is False
        assert [e.succeeded for e in memory[-2:]] == [True, True]


def test_a_wall_hit_is_written_at_once_and_avoided_in_the_same_episode(
    manager: MemoryManager,
) -> None:
    model = always("north")  # north from the start is a wall
    agent = make_agent(manager, model)
    observation = agent.reset(seed=0)
    observation, _ = agent.step(agent.act(observation))  # bumps: the lesson is in memory now
    [early] = manager.for_agent("robot", tenant="t").skills.list()
    assert early.metadata["lesson"] == "blocked" and early.metadata["outcome"] == "running"
    assert agent.act(observation) != 0  # the same state: north is vetoed now, not next trial
    agent.step(1)
    record = agent.last_record
    assert record is not None and record.reason is not None
    assert record.reason.startswith("memory veto: not north")
    # Written at the end, the same agent repeats the wall for the whole first trial.
    late = make_agent(manager, always("north"), agent="late", online=False)
    episode = late.run_episode(seed=0)
    assert episode.length == 20 and not episode.succeeded


def scripted(moves: list[str]) -> FunctionModel:
    """A model that answers ``moves`` in order."""
    script = iter(moves)

    def answer(request: ModelRequest) -> str:
        return json.dumps({"reason": "scripted", "action": next(script)})

    return FunctionModel(answer)


def corridor_agent(manager: MemoryManager, moves: list[str], max_steps: int) -> Agent:
    """``.SD``: west of the start a dead end, east the dock; the rules off, so the
    script is what happens."""
    env = TextMaze((".SD",), max_steps=max_steps)
    memory = manager.for_agent("r", tenant="t")
    planner = MemoryPlanningModule(
        scripted(moves), env.action_names, rules=False, **prompt_parts_of(env)
    )
    learner = MemoryLearning(memory, env="corridor", action_names=env.action_names)
    return Agent(MemoryPerception(memory), planner, ExecutionModule(env), learner)


def test_a_loop_the_route_to_the_goal_disproves_is_taken_back(manager: MemoryManager) -> None:
    agent = corridor_agent(manager, ["west", "east", "east"], max_steps=5)
    skills = manager.for_agent("r", tenant="t").skills
    observation = agent.reset(seed=0)
    observation, _ = agent.step(agent.act(observation))  # west, into the dead end
    observation, _ = agent.step(agent.act(observation))  # east, back: a loop, written at once
    assert [(i.metadata["lesson"], i.metadata["action"]) for i in skills.list()] == [
        ("loop", "east")
    ]
    agent.step(agent.act(observation))  # east again: the dock
    assert agent.done
    # East out of the dead end was the way to the goal after all: no loop any more.
    assert sorted(i.metadata["lesson"] for i in skills.list()) == ["success", "success"]


def test_an_early_lesson_the_end_disproves_keeps_what_earlier_episodes_taught(
    manager: MemoryManager,
) -> None:
    # Episode 0 loops west-east until its time runs out; episode 1 loops once, then docks.
    agent = corridor_agent(manager, ["west", "east", "west", "west", "east", "east"], 3)
    agent.run(2, seed=0)
    skills = manager.for_agent("r", tenant="t").skills
    loops = {i.metadata["action"]: i for i in skills.list(where={"lesson": "loop"})}
    # ep0 blamed east out of the dead end, then (round again) west into it.
    assert set(loops) == {"east", "west"}
    # ep1's early blame of east was taken back: what ep0 wrote is there as it was.
    assert loops["east"].metadata["episodes"] == ["run:ep0"]
    assert loops["east"].metadata["outcome"] == "time_limit"


def test_a_model_written_lesson_is_budgeted_and_counted(manager: MemoryManager) -> None:
    def lesson(request: ModelRequest) -> ModelResponse | str:
        if request.output_schema is not None:
            return south_first(request)
        return ModelResponse(
            text="Do not go north at the start.", usage=Usage(prompt_tokens=30, completion_tokens=8)
        )

    agent = make_agent(  # online, the first episode would learn its way to the dock
        manager, FunctionModel(south_first), lesson_model=FunctionModel(lesson), online=False
    )
    agent.run_episode(seed=0)
    learner = agent.learning_module
    assert isinstance(learner, MemoryLearning)
    assert learner.model_lessons == 1 and learner.model_tokens == 38
    [written] = manager.for_agent("robot", tenant="t").skills.list(where={"lesson": "model"})
    assert written.text == "Do not go north at the start." and written.metadata["tokens"] == 38

    def spent(request: ModelRequest) -> str:
        raise BudgetExceeded("robot", "tokens", 10, 38)

    agent = make_agent(
        manager, FunctionModel(south_first), agent="b", lesson_model=FunctionModel(spent),
        online=False,
    )  # fmt: skip
    assert agent.run_episode(seed=0).length == 20  # the run went on
    assert agent.learning_module.budget_spent  # type: ignore[attr-defined]


def test_random_layouts_are_seeded_and_solvable() -> None:
    first, again, other = random_layout(4), random_layout(4), random_layout(5)
    assert first == again and first != other
    env = TextMaze(first)  # refuses layouts with cells that cannot reach the dock
    assert env.distance_to_dock(env.start) is not None and env.start != env.dock
