"""Feedback and rewards from tool outcomes, and a learner that learns from them."""

from __future__ import annotations

from typing import Any

import gymnasium
import pytest
from gymnasium import spaces

from llmagentos import Agent, ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from llmagentos.modules import DiscreteExtractor
from llmagentos.modules.tool_feedback import (
    OutcomeRecorder,
    TestPassRateReward,
    ToolOutcomeFeedback,
    ToolSuccessReward,
    read_test_report,
    read_tool_results,
)
from llmagentos.registration import registry
from llmagentos.rl import EpsilonGreedySelector, QLearning, QTable
from llmagentos.tools import ToolResult
from llmagentos.types import Outcome, Transition


def report(passed: int, total: int, error: str | None = None) -> dict[str, Any]:
    outcomes = [
        {"name": f"test_{i}", "passed": i < passed, "message": "" if i < passed else "boom"}
        for i in range(total)
    ]
    return {
        "passed": passed,
        "failed": total - passed,
        "total": total,
        "pass_rate": passed / total if total else 0.0,
        "error": error,
        "outcomes": outcomes,
    }


class ReportObject:
    """The sandbox TestReport's shape, as attributes."""

    def __init__(self, passed: int, total: int) -> None:
        self.passed, self.total, self.failed = passed, total, total - passed
        self.pass_rate = passed / total
        self.error = None
        self.outcomes: list[Any] = []


def transition(info: dict[str, Any], reward: float = 0.0, done: bool = False) -> Transition:
    return Transition(None, None, "code", reward, None, None, done, False, info)


# -- reading outcomes ------------------------------------------------------------------------


def test_reports_are_read_from_dicts_and_objects() -> None:
    as_dict = read_test_report({"report": report(2, 5)})
    assert as_dict is not None
    assert as_dict["pass_rate"] == 0.4 and as_dict["failed"] == 3
    assert [f["name"] for f in as_dict["failures"]] == ["test_2", "test_3", "test_4"]
    as_object = read_test_report({"report": ReportObject(3, 4)})
    assert as_object is not None and as_object["pass_rate"] == 0.75
    assert read_test_report({}) is None and read_test_report({"report": {"x": 1}}) is None


def test_tool_results_come_from_info_or_the_observation() -> None:
    good = ToolResult(ok=True, value=1, name="files.read_file")
    assert read_tool_results({"tool_results": [good, good]}) == [good, good]
    assert read_tool_results({"tool_result": good}) == [good]
    assert read_tool_results({}, observation=good) == [good]
    assert read_tool_results({}, observation={"ok": False, "error": "x"}) == [
        {"ok": False, "error": "x"}
    ]
    assert read_tool_results({}, observation="plain text") == []


# -- the feedback collector --------------------------------------------------------------------


def test_feedback_summarizes_a_failing_test_report() -> None:
    collector = ToolOutcomeFeedback()
    outcome = Outcome("obs", 0.4, False, False, {"report": report(2, 5)})
    enriched = collector.collect("code", outcome)
    feedback = enriched.info["feedback"]
    assert feedback["kind"] == "tests" and not feedback["ok"]
    assert feedback["text"] == "3/5 tests failed: test_2, test_3, test_4"
    assert "feedback" not in outcome.info  # the original is untouched
    assert enriched.reward == 0.4 and enriched.observation == "obs"


def test_feedback_for_passing_and_broken_code() -> None:
    collector = ToolOutcomeFeedback()
    passing = collector.collect("c", Outcome(None, 1.0, True, False, {"report": report(4, 4)}))
    assert passing.info["feedback"]["ok"] and passing.info["feedback"]["text"] == (
        "all 4 tests passed"
    )
    broken = collector.collect(
        "c", Outcome(None, 0.0, False, False, {"report": report(0, 0, "SyntaxError: bad")})
    )
    assert broken.info["feedback"]["text"] == "tests could not run: SyntaxError: bad"
    assert collector.state_dict()["test_runs"] == 2 and collector.test_passes == 1


def test_feedback_summarizes_tool_results() -> None:
    collector = ToolOutcomeFeedback()
    results = [
        ToolResult(ok=True, value="x", name="files.read_file"),
        ToolResult(ok=False, error="PathRefused: refused path '../x'", name="files.write_file"),
    ]
    enriched = collector.collect("a", Outcome(None, 0.0, info={"tool_results": results}))
    feedback = enriched.info["feedback"]
    assert feedback["kind"] == "tools" and feedback["calls"] == 2 and feedback["errors"] == 1
    assert "files.write_file: PathRefused" in feedback["text"]
    plain = Outcome(None, 0.0, info={"other": 1})
    assert collector.collect("a", plain) is plain
    assert collector.state_dict()["tool_errors"] == 1


# -- rewards -------------------------------------------------------------------------------


def test_pass_rate_reward_rate_improvement_and_bonus() -> None:
    plain = TestPassRateReward()
    assert plain.reward(transition({"report": report(2, 5)})) == pytest.approx(0.4)
    assert plain.reward(transition({}, reward=7.0)) == 7.0  # no report: env reward
    shaped = TestPassRateReward(
        rate_weight=0.0, improvement_weight=1.0, all_pass_bonus=1.0, error_penalty=-0.5
    )
    assert shaped.reward(transition({"report": report(1, 4)})) == pytest.approx(0.25)
    assert shaped.reward(transition({"report": report(3, 4)})) == pytest.approx(0.5)
    assert shaped.reward(transition({"report": report(4, 4)}, done=True)) == pytest.approx(1.25)
    # The episode ended: the next attempt is compared with 0 again.
    assert shaped.reward(transition({"report": report(0, 0, "ImportError")})) == -0.5
    shaped.reset()
    assert shaped.previous == 0.0


def test_tool_success_reward_per_call() -> None:
    reward = ToolSuccessReward(success=1.0, penalty=-2.0)
    ok, bad = ToolResult(ok=True, value=1), ToolResult(ok=False, error="x")
    assert reward.reward(transition({"tool_results": [ok, ok, bad]})) == 0.0
    assert reward.reward(transition({"tool_result": bad})) == -2.0
    assert reward.reward(transition({}, reward=3.0)) == 0.0
    assert ToolSuccessReward(no_call=None).reward(transition({}, reward=3.0)) == 3.0


def test_outcome_recorder_records_without_learning() -> None:
    recorder = OutcomeRecorder(keep=2)
    for value in (1.0, 0.0, 0.5):
        report_ = recorder.update(transition({}, reward=value))
    assert report_ == {"reward": 0.5, "mean_reward": pytest.approx(0.5)}
    assert recorder.rewards == [0.0, 0.5] and recorder.state_dict()["updates"] == 3


def test_components_are_registered() -> None:
    assert isinstance(registry.make("reward", "test_pass_rate"), TestPassRateReward)
    assert isinstance(registry.make("reward", "tool_success"), ToolSuccessReward)
    assert isinstance(registry.make("feedback", "tool_outcome"), ToolOutcomeFeedback)
    assert isinstance(registry.make("optimizer", "recorder"), OutcomeRecorder)


# -- learning from tool outcomes -------------------------------------------------------------


class StrategyEnv(gymnasium.Env[int, int]):
    """One decision per episode: which coding strategy (prompt template or tool) to use.

    The environment pays no reward itself: what each strategy achieves is only in the
    test report (or tool results) of ``info``, so a learner can only learn the better
    strategy through a tool-outcome reward function.
    """

    def __init__(self, outcomes: list[dict[str, Any]]) -> None:
        self.outcomes = outcomes
        self.action_space = spaces.Discrete(len(outcomes))
        self.observation_space = spaces.Discrete(1)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        return 0, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        return 0, 0.0, True, False, dict(self.outcomes[action])


def strategy_agent(env: StrategyEnv, reward_fn: Any) -> tuple[Agent, QTable]:
    q = QTable(int(env.action_space.n), 1)
    agent = Agent(
        PerceptionModule(extractor=DiscreteExtractor()),
        PlanningModule(EpsilonGreedySelector(q, epsilon=0.3, seed=0)),
        ExecutionModule(env, feedback=ToolOutcomeFeedback()),
        LearningModule(QLearning(q, alpha=0.3, gamma=0.0), reward_fn=reward_fn),
    )
    return agent, q


def test_a_q_learner_converges_to_the_strategy_with_the_best_pass_rate() -> None:
    # Three prompt templates; the second passes every test, the others some.
    env = StrategyEnv(
        [{"report": report(2, 5)}, {"report": report(5, 5)}, {"report": report(3, 5)}]
    )
    agent, q = strategy_agent(env, TestPassRateReward(all_pass_bonus=0.5))
    agent.run(150, seed=0, train=True)
    values = q.values(0)
    assert max(range(3), key=values.__getitem__) == 1
    assert values[1] == pytest.approx(1.5, abs=0.05)
    assert values[0] == pytest.approx(0.4, abs=0.05) and values[2] == pytest.approx(0.6, abs=0.05)
    agent.eval()
    assert agent.act(agent.reset(seed=1)) == 1
    # The feedback collector saw every step's report on the way.
    assert agent.execution_module.feedback.test_runs == 150  # type: ignore[attr-defined]


def test_a_q_learner_avoids_the_tool_that_fails() -> None:
    fail = ToolResult(ok=False, error="timed out", name="web.fetch")
    ok = ToolResult(ok=True, value="page", name="files.read_file")
    env = StrategyEnv([{"tool_results": [fail, ok]}, {"tool_results": [ok, ok]}])
    agent, q = strategy_agent(env, ToolSuccessReward())
    agent.run(80, seed=0, train=True)
    assert q.values(0)[1] > q.values(0)[0]
    assert q.values(0)[1] == pytest.approx(2.0, abs=0.05)
