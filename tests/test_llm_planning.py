"""The LLM planner and the hybrid (LLM proposes, Q-learning critiques), with test models."""

from __future__ import annotations

import json
import re
import statistics
from typing import Any

import pytest

from llmagentos import Agent, ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from llmagentos.build import build_agent
from llmagentos.checks import check_module
from llmagentos.config import RunConfig
from llmagentos.envs.text_maze import TextMaze, register_text_mazes
from llmagentos.exceptions import ConfigError, ModelError, ModelOutputError
from llmagentos.llm import FunctionModel, ModelRequest, ScriptedModel
from llmagentos.modules.hybrid_planning import HybridPlanningModule, hybrid_planning
from llmagentos.modules.llm_planning import LLMPlanningModule, action_schema, llm_planning
from llmagentos.modules.planning import FixedGoal
from llmagentos.registration import registry
from llmagentos.rl import EpsilonGreedySelector, QLearning, QTable

NAMES = ("north", "east", "south", "west")
NORTH, EAST, SOUTH, WEST = range(4)
MAZE = TextMaze()
START = MAZE.descriptions[MAZE.start]  # "... The charging dock is 4 steps south and 4 steps east."


def reply(action: str, reason: str = "the dock is that way") -> str:
    return json.dumps({"reason": reason, "action": action})


def helpful(request: ModelRequest) -> str:
    """A stand-in for a good LLM: head for the dock through an open side."""
    text = next(m.content or "" for m in request.messages if m.role == "user")
    sides = dict(re.findall(r"(North|East|South|West): (open|wall)", text))
    bearing = sorted(
        ((int(n), d) for n, d in re.findall(r"(\d+) steps? (north|east|south|west)", text)),
        reverse=True,
    )
    for steps, direction in bearing:
        if sides.get(direction.capitalize()) == "open":
            return reply(direction, f"the dock is {steps} steps {direction}")
    way = next(side.lower() for side, state in sides.items() if state == "open")
    return reply(way, "the only way on")


def planner(model: Any, **kwargs: Any) -> LLMPlanningModule:
    return LLMPlanningModule(model, NAMES, task="a robot in a maze", **kwargs)


# -- the LLM planner --------------------------------------------------------------------------


def test_the_llm_planner_takes_the_models_action_and_reason() -> None:
    model = ScriptedModel([reply("east", "east is open and the dock is east")])
    module = planner(model)
    decision = module.decide(START)
    assert decision.action == EAST
    assert decision.reason == "llm: east is open and the dock is east"
    assert module.plan is not None and module.calls == 1 and module.failures == 0
    (request,) = model.requests
    system, user = request.messages
    assert system.role == "system" and "a robot in a maze" in (system.content or "")
    assert "north, east, south, west" in (system.content or "")
    assert user.content == START
    assert request.settings.temperature == 0.0
    assert request.output_schema == action_schema(NAMES)
    assert request.output_schema["properties"]["action"]["enum"] == list(NAMES)
    model.assert_all_used()


async def test_adecide_awaits_the_model_natively() -> None:
    module = planner(FunctionModel(helpful))
    decision = await module.adecide(START)
    assert decision.action == SOUTH and decision.reason == "llm: the dock is 4 steps south"
    assert await module.aplan(START) == SOUTH


def test_the_goal_and_the_environments_hints_reach_the_prompt() -> None:
    model = ScriptedModel([reply("south")])
    planner(model, goal_manager=FixedGoal("reach the dock")).decide(START)
    assert model.requests[0].messages[-1].content == f"Goal: reach the dock\n{START}"

    made = llm_planning(model=ScriptedModel([]), env=MAZE)
    assert made.action_names == NAMES
    assert "grid maze" in made.system and "never into a wall" in made.system
    assert '{"reason": "the dock is east and east is open", "action": "east"}' in made.system


def test_non_text_features_are_sent_as_json() -> None:
    model = ScriptedModel([reply("west")])
    planner(model).decide({"x": 1, "dock": [2, 3]})
    assert model.requests[0].messages[-1].content == '{"dock": [2, 3], "x": 1}'


def test_invalid_replies_are_repaired_then_fall_back_to_a_random_action() -> None:
    model = ScriptedModel(["not json", reply("up"), '{"action": "east"}'])
    module = planner(model, seed=3)
    decision = module.decide(START)
    assert decision.action in range(4)
    assert decision.reason is not None
    assert decision.reason.startswith("fallback: test:scripted: no valid structured output")
    assert (module.calls, module.failures) == (1, 1)
    model.assert_all_used()  # two repairs were asked for before giving up


def test_a_repaired_reply_is_used() -> None:
    model = ScriptedModel(["{", reply("north", "north is open")])
    assert planner(model).decide(START).action == NORTH


def test_model_errors_fall_back_to_a_fixed_action_or_raise_when_asked() -> None:
    module = planner(ScriptedModel([ModelError("connection refused")]), fallback=WEST)
    decision = module.decide(START)
    assert (decision.action, decision.reason) == (WEST, "fallback: connection refused")
    strict = planner(ScriptedModel(["nope", "nope", "nope"]), fallback="raise")
    with pytest.raises(ModelOutputError):
        strict.decide(START)
    with pytest.raises(ConfigError, match="fallback"):
        planner(ScriptedModel([]), fallback=7)


def test_the_random_fallback_is_seeded() -> None:
    def failing() -> LLMPlanningModule:
        return planner(FunctionModel(lambda request: "garbage"), repairs=0, seed=1)

    one, two = failing(), failing()
    assert [one.plan(START) for _ in range(10)] == [two.plan(START) for _ in range(10)]


def test_the_cache_asks_once_per_prompt_and_evicts_the_oldest() -> None:
    model = FunctionModel(helpful)
    module = planner(model, cache_size=2)
    texts = [MAZE.descriptions[cell] for cell in [(0, 0), (0, 1), (0, 2)]]
    asked, cached = module.decide(texts[0]), module.decide(texts[0])
    assert (asked.action, asked.reason) == (cached.action, cached.reason)
    assert asked.details is not None and cached.details is not None
    assert (asked.details["proposal"]["from"], cached.details["proposal"]["from"]) == (
        "model",
        "cache",
    )
    assert (module.calls, module.cache_hits, len(model.requests)) == (1, 1, 1)
    module.decide(texts[1])
    module.decide(texts[2])  # evicts texts[0], the least recently used
    module.decide(texts[0])
    assert module.calls == 4
    no_cache = planner(FunctionModel(helpful))
    no_cache.decide(START)
    no_cache.decide(START)
    assert no_cache.calls == 2


def test_the_llm_planner_keeps_the_module_contract() -> None:
    check_module(planner(FunctionModel(helpful)), sample=START)


def test_an_llm_agent_walks_the_maze_with_a_helpful_model() -> None:
    register_text_mazes()
    execution = ExecutionModule("TextMaze-v0")
    module = llm_planning(model=FunctionModel(helpful), env=execution.env, cache_size=64)
    agent = Agent(PerceptionModule(), module, execution)
    result = agent.run(2, seed=0)
    assert result.returns == [2.0, 2.0]  # the shortest route: 7 steps at -1, then +9
    assert module.calls == 8 and module.cache_hits == 8


def test_factories_work_through_the_registry_by_import_path() -> None:
    register_text_mazes()
    context = {"env": MAZE, "n_actions": 4, "q_table": QTable(4), "seed": 0}
    model = FunctionModel(helpful)
    llm = registry.make(
        "planning", "llmagentos.modules.llm_planning:llm_planning", context, model=model
    )
    assert isinstance(llm, LLMPlanningModule) and llm.model is model
    hybrid = registry.make(
        "planning",
        "llmagentos.modules.hybrid_planning:hybrid_planning",
        context,
        model=model,
        trust_after=4,
        epsilon=0.2,
    )
    assert isinstance(hybrid, HybridPlanningModule)
    assert hybrid.q_table is context["q_table"] and hybrid.trust_after == 4
    assert hybrid.llm.cache_size == 1024 and hybrid.llm.action_names == NAMES
    with pytest.raises(ConfigError, match="Q-table"):
        hybrid_planning(model=model)


def test_a_config_builds_a_hybrid_agent_on_a_growing_text_q_table() -> None:
    register_text_mazes()
    config = RunConfig.model_validate(
        {
            "env": {"id": "TextMaze-v0"},
            "agent": {
                "planning": {
                    "type": "llmagentos.modules.hybrid_planning:hybrid_planning",
                    "model": FunctionModel(helpful),
                },
                "learning": {"type": "q_learning", "alpha": 0.5},
            },
            "train": {"episodes": 3, "seed": 0},
        }
    )
    built = build_agent(config)
    assert built.q_table is not None and built.q_table.n_states is None  # keyed by text
    result = built.agent.run(3, seed=0)
    assert all(e.terminated for e in result.episodes)
    assert START in set(built.q_table.states())


# -- the hybrid -------------------------------------------------------------------------------


def hybrid(model: Any, q: QTable | None = None, **kwargs: Any) -> HybridPlanningModule:
    kwargs.setdefault("epsilon", 0.0)
    return HybridPlanningModule(q or QTable(4), planner(model, cache_size=64), **kwargs)


def visit(q: QTable, state: str, action: int, value: float, times: int) -> None:
    for _ in range(times):
        q.update(state, action, value, alpha=1.0)


def test_the_hybrid_follows_the_llm_in_an_unfamiliar_state() -> None:
    module = hybrid(FunctionModel(helpful))
    decision = module.decide(START)
    assert decision.action == SOUTH
    assert decision.reason == "llm: south, the dock is 4 steps south (q unsure: 0 visits)"
    assert decision.scores == [0.0, 0.0, 0.0, 0.0]
    assert module.counts["llm"] == 1


def test_the_hybrid_follows_q_once_confident_without_asking_the_model() -> None:
    q = QTable(4)
    visit(q, START, EAST, 7.1, 10)
    visit(q, START, SOUTH, -3.0, 2)
    model = FunctionModel(helpful)  # would say south
    module = hybrid(model, q, trust_after=10)
    decision = module.decide(START)
    assert decision.action == EAST
    assert decision.reason == "q: confident (visits 12), Q=7.10"
    assert decision.scores == [0.0, 7.1, -3.0, 0.0]
    assert model.requests == [] and module.counts["q"] == 1


def test_the_hybrid_asks_the_llm_while_q_is_unsure() -> None:
    q = QTable(4)
    visit(q, START, EAST, 5.0, 3)
    few = hybrid(FunctionModel(helpful), q, trust_after=10).decide(START)
    assert few.action == SOUTH and "(q unsure: 3 visits)" in (few.reason or "")

    visit(q, START, SOUTH, 4.5, 9)  # familiar now, but the top two are close
    close = hybrid(FunctionModel(helpful), q, trust_after=10, margin=1.0).decide(START)
    assert close.action == SOUTH and "top Q-values within 1" in (close.reason or "")

    q2 = QTable(4)
    visit(q2, START, SOUTH, -4.0, 12)
    tied = hybrid(FunctionModel(helpful), q2, margin=0.0).decide(START)  # three untried at 0
    assert tied.action == SOUTH and "top Q-values tied" in (tied.reason or "")
    visit(q2, START, NORTH, -3.0, 1)
    visit(q2, START, EAST, -2.0, 1)  # west, never tried, keeps the initial 0: the best
    untried = hybrid(FunctionModel(helpful), q2).decide(START)
    assert untried.action == SOUTH and "its best action is untried" in (untried.reason or "")


def test_a_state_that_keeps_coming_back_is_decided_by_q() -> None:
    q = QTable(4)
    visit(q, START, SOUTH, -2.0, 1)
    module = hybrid(FunctionModel(helpful), q, loop_after=3, seed=0)
    first, second, third = (module.decide(START) for _ in range(3))
    assert first.action == second.action == SOUTH
    assert third.action in (NORTH, EAST, WEST)  # the best by Q; ties broken at random
    assert third.reason == "q: breaking a loop (state seen 3 times this episode), Q=0.00"
    module.reset()
    assert module.decide(START).action == SOUTH  # a new episode starts counting again
    never = hybrid(FunctionModel(helpful), q, loop_after=0)
    assert {never.decide(START).action for _ in range(5)} == {SOUTH}


def test_in_evaluation_a_loop_is_broken_even_where_q_is_confident() -> None:
    q = QTable(4)
    visit(q, START, NORTH, 5.0, 12)  # confident, and wrong: north is a wall
    for action, value in ((EAST, -1.0), (SOUTH, -0.5), (WEST, -2.0)):
        visit(q, START, action, value, 1)
    module = hybrid(FunctionModel(helpful), q, loop_after=3)
    module.train(False)
    actions = [module.decide(START).action for _ in range(7)]
    # Twice Q's choice; then always among the actions taken least often here, best first.
    assert actions == [NORTH, NORTH, SOUTH, EAST, WEST, SOUTH, EAST]
    module.train(True)  # while training, Q (which is learning) keeps the last word
    module.reset()
    assert [module.decide(START).action for _ in range(4)] == [NORTH] * 4


def test_exploration_only_while_training() -> None:
    model = FunctionModel(helpful)
    module = hybrid(model, epsilon=1.0, seed=0)
    decisions = [module.decide(START) for _ in range(20)]
    assert all((d.reason or "").startswith("explore: random action") for d in decisions)
    assert len({d.action for d in decisions}) > 1 and model.requests == []
    module.train(False)
    assert module.llm.training is False
    module.reset()
    evaluation = module.decide(START)
    assert evaluation.action == SOUTH and (evaluation.reason or "").startswith("llm: ")


def test_the_hybrid_caches_proposals_across_episodes() -> None:
    model = FunctionModel(helpful)
    module = hybrid(model, loop_after=0)
    for _ in range(3):
        module.reset()
        module.decide(START)
    assert len(model.requests) == 1 and module.llm.cache_hits == 2
    uncached = HybridPlanningModule(
        QTable(4), FunctionModel(helpful), action_names=NAMES, cache_size=0, epsilon=0.0
    )
    uncached.decide(START)
    uncached.decide(START)
    assert uncached.llm.calls == 2


def test_a_failing_model_falls_back_inside_the_hybrid() -> None:
    module = hybrid(ScriptedModel([ModelError("model crashed")]), seed=0)
    decision = module.decide(START)
    assert decision.reason == "fallback: model crashed (q unsure: 0 visits)"
    assert module.counts["fallback"] == 1


async def test_the_hybrids_async_and_sync_paths_agree() -> None:
    q = QTable(4)
    visit(q, START, EAST, 7.0, 10)
    texts = [START, MAZE.descriptions[(0, 1)], START]
    sync_module = hybrid(FunctionModel(helpful), q, seed=0)
    async_module = hybrid(FunctionModel(helpful), q, seed=0)
    for text in texts:
        assert sync_module.decide(text) == await async_module.adecide(text)


def test_the_hybrid_keeps_the_module_contract_and_checks_its_arguments() -> None:
    check_module(hybrid(FunctionModel(helpful), epsilon=0.3), sample=START)
    with pytest.raises(ConfigError, match="Q-table has 3"):
        HybridPlanningModule(QTable(3), planner(FunctionModel(helpful)))
    with pytest.raises(ConfigError, match="trust_after"):
        hybrid(FunctionModel(helpful), trust_after=-1)
    with pytest.raises(ConfigError, match="epsilon"):
        hybrid(FunctionModel(helpful), epsilon=1.5)


async def test_a_hybrid_agent_runs_asynchronously() -> None:
    register_text_mazes()
    q = QTable(4)
    agent = Agent(
        PerceptionModule(),
        hybrid(FunctionModel(helpful), q),
        ExecutionModule("TextMaze-v0"),
        LearningModule(QLearning(q, alpha=0.5)),
    )
    result = await agent.arun(2, seed=0)
    assert result.returns == [2.0, 2.0]


# -- the learning curve: hybrid against plain Q-learning --------------------------------------

EPISODES, SEEDS = 20, range(5)
EPSILON = 0.05  # the same for both agents: they differ in the planner only


def hybrid_agent(seed: int) -> Agent:
    q = QTable(4)
    execution = ExecutionModule("TextMaze-v0")
    planning = HybridPlanningModule(
        q,
        LLMPlanningModule(FunctionModel(helpful), execution.env.action_names, cache_size=1024),
        epsilon=EPSILON,
        seed=seed,
    )
    return Agent(PerceptionModule(), planning, execution, LearningModule(QLearning(q, alpha=0.5)))


def q_learning_agent(seed: int) -> Agent:
    q = QTable(4)
    return Agent(
        PerceptionModule(),
        PlanningModule(EpsilonGreedySelector(q, epsilon=EPSILON, seed=seed)),
        ExecutionModule("TextMaze-v0"),
        LearningModule(QLearning(q, alpha=0.5)),
    )


def test_a_helpful_llm_makes_the_hybrid_learn_faster_than_plain_q_learning() -> None:
    register_text_mazes()
    hybrid_runs = [hybrid_agent(s).run(EPISODES, seed=s) for s in SEEDS]
    plain_runs = [q_learning_agent(s).run(EPISODES, seed=s) for s in SEEDS]
    hybrid_mean = statistics.mean(run.mean_return for run in hybrid_runs)
    plain_mean = statistics.mean(run.mean_return for run in plain_runs)
    # Measured: hybrid +1.2 per episode (the shortest route earns +2), plain Q-learning -12.5.
    assert hybrid_mean > plain_mean + 8, (hybrid_mean, plain_mean)
    # The hybrid docks in its very first episode; Q-learning wanders first.
    assert all(run.episodes[0].terminated for run in hybrid_runs)
    assert statistics.mean(run.returns[0] for run in hybrid_runs) >= 0
    assert statistics.mean(run.returns[0] for run in plain_runs) < -20
