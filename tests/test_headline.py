"""The README's headline compares like with like: the main job's config and the ablation's arms."""

from __future__ import annotations

import builtins
import sys
from pathlib import Path
from typing import Any

import pytest

from llmagentos.config import load_config
from llmagentos.experiment import with_overrides
from llmagentos.modules.hybrid_planning import HybridPlanningModule
from llmagentos.modules.llm_planning import LLMPlanningModule
from llmagentos.rl.selectors import EpsilonGreedySelector

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import _stats  # noqa: E402
import bench_hybrid_ablation as ablation  # noqa: E402
import bench_hybrid_settings as settings  # noqa: E402
from _standins import stand_in  # noqa: E402

CONFIG = ROOT / "examples" / "configs" / "text_maze_llm.toml"


def test_the_main_job_and_its_baseline_differ_in_the_planner_only() -> None:
    config = load_config(CONFIG)
    assert config.baseline is not None
    agent, baseline = config.agent, config.baseline
    assert agent.planning.type == "hybrid"
    assert baseline.planning.type == "epsilon_greedy"
    assert agent.planning.params["epsilon"] == baseline.planning.params["epsilon"]
    assert set(baseline.planning.params) == {"epsilon"}  # nothing else tuned for one side
    for part in ("perception", "execution", "learning"):
        assert getattr(agent, part) == getattr(baseline, part), part
    assert agent.q_initial == baseline.q_initial


def _planner(arm: str, epsilon: float = 0.05) -> Any:
    config = with_overrides(load_config(CONFIG), seed=3)
    return ablation.build_arm(arm, config, epsilon, 3, llm="toward").planning_module


def _epsilon(planner: Any) -> float:
    if isinstance(planner, HybridPlanningModule):
        return float(planner.exploration.now(planner.exploration.epsilon))
    selector = planner.selector
    assert isinstance(selector, EpsilonGreedySelector)
    return float(selector.current_epsilon())


@pytest.mark.parametrize("epsilon", [0.05, 0.1])
def test_every_arm_explores_alike_and_differs_as_it_says(epsilon: float) -> None:
    planners = {arm: _planner(arm, epsilon) for arm in ablation.ARMS}
    assert {arm: _epsilon(p) for arm, p in planners.items()} == dict.fromkeys(planners, epsilon)
    assert not isinstance(planners["q"], HybridPlanningModule)
    loop_after = {arm: getattr(p, "loop_after", None) for arm, p in planners.items()}
    assert loop_after == {
        "q": None,
        "q_loop": 3,
        "hybrid_no_loop": 0,
        "hybrid": 3,
        "q_skeleton": 0,
    }
    for arm in ("q_loop", "q_skeleton"):  # the LLM's slot holds greedy Q, never a model
        assert isinstance(planners[arm].llm, ablation.GreedyQProposer)
    for arm in ("hybrid", "hybrid_no_loop"):
        assert type(planners[arm].llm) is LLMPlanningModule
        assert planners[arm].llm.model.model_id == "stand-in:toward"
    hybrid, q_loop = planners["hybrid"], planners["q_loop"]
    for name in ("trust_after", "margin"):
        assert getattr(hybrid, name) == getattr(q_loop, name), name


def test_the_greedy_stand_in_reads_the_live_q_table_and_never_asks_a_model() -> None:
    planner = _planner("q_loop")
    proposer = planner.llm
    state = "You are at a corridor."
    proposer.q_table.update(state, 2, 5.0, alpha=1.0)
    assert proposer.cached(state).action == 2
    proposer.q_table.update(state, 1, 9.0, alpha=1.0)
    assert proposer.cached(state).action == 1
    assert proposer.model.requests == []


def test_a_small_ablation_reports_every_arm_with_intervals(tmp_path: Path) -> None:
    result = ablation.ablation(
        seeds=[0, 1], epsilons=[0.05], arms=list(ablation.ARMS), plot_dir=tmp_path, llm="toward"
    )
    assert [row[1] for row in result.rows] == list(ablation.ARMS.values())
    data = result.data["epsilon=0.05"]
    assert set(data["effects"]) == {name for name, _, _ in ablation.EFFECTS}
    for arm, runs in data["runs"].items():
        assert [run["seed"] for run in runs] == [0, 1], arm
        assert all(len(run["train_returns"]) == 30 for run in runs)
    summary = data["summary"]["hybrid"]["train_return"]
    assert summary["ci95_low"] <= summary["mean"] <= summary["ci95_high"]


def _answers(name: str, texts: list[str]) -> list[str]:
    from llmagentos.llm.types import Message, ModelRequest

    model = stand_in(name)
    replies = [
        model.request(ModelRequest(messages=(Message(role="user", content=text),)))
        for text in texts
    ]
    return [reply.text for reply in replies]


def test_salted_stand_ins_are_wrong_in_other_cells_as_often() -> None:
    from llmagentos.envs.text_maze import TextMaze

    texts = list(TextMaze("large").descriptions.values())
    right = _answers("toward", texts)
    wrong = {name: _answers(name, texts) for name in ("wrong30", "wrong30:b", "wrong45")}
    cells = {name: {i for i, (a, b) in enumerate(zip(right, answers, strict=True)) if a != b}
             for name, answers in wrong.items()}  # fmt: skip
    assert cells["wrong30"] != cells["wrong30:b"]
    for name, share in (("wrong30", 0.3), ("wrong30:b", 0.3), ("wrong45", 0.45)):
        assert abs(len(cells[name]) / len(texts) - share) < 0.15, (name, len(cells[name]))
    with pytest.raises(ValueError, match="unknown stand-in"):
        stand_in("toward:b")


def test_the_settings_sweep_pairs_each_setting_with_q_learning_by_seed() -> None:
    data = settings.sweep([0, 1], [(5, 0.0)], ["toward"])
    cell = data["cells"]["trust_after=5 margin=0 toward"]
    assert cell["seeds"] == 2 and len(cell["gains"]) == 2
    assert cell["gain"]["mean"] == pytest.approx(sum(cell["gains"]) / 2)
    # A helpful advisor beats plain Q-learning on both seeds, and every greedy policy docks.
    assert cell["wins"] == 2 and cell["eval_all_docked"]


def test_intervals_without_scipy_err_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_scipy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert _stats.t_quantile(9) == 2.262
    assert _stats.t_quantile(22) == 2.086  # t(0.975, 22) is 2.074: the table's df 20
    interval = _stats.Interval.of([1.0, 2.0, 3.0])
    assert interval.mean == 2.0
    assert interval.half == pytest.approx(4.303 * 1.0 / 3**0.5)
