"""The search agent: the engine behind the four modules, one query per episode.

```
 SearchEnv.reset ─▶ {"query": q, "hits": []}
 QueryPerception     the query, whitespace collapsed (an empty one is refused)
 SearchPlanning      Decision({"query", "k", "mode", "rerank"}, reason="hybrid top-5")
 ExecutionModule     SearchEnv.step: engine.search(...) ─▶ {"query", "hits": [...]}
                     reward = 1 / rank of the first relevant source (0 if none; 0 with no
                     judgments given); the episode ends after the one search
 LearningModule      OutcomeRecorder: the rewards, for a report (the policy is fixed)
```

:func:`ask` runs one query through it and returns the hits and the episode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import gymnasium

from llmagentos.agent import Agent
from llmagentos.exceptions import ConfigError, EnvError
from llmagentos.modules import ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from llmagentos.modules.tool_feedback import OutcomeRecorder
from llmagentos.search.engine import SearchEngine, SearchHit
from llmagentos.search.rerank import Reranker
from llmagentos.types import Decision, EpisodeResult

__all__ = ["QueryPerception", "SearchEnv", "SearchPlanning", "ask", "build_search_agent"]

_MODES = ("lexical", "vector", "hybrid")


class _AnySpace(gymnasium.spaces.Space[Any]):
    """Dict-shaped values with the given keys."""

    def __init__(self, *keys: str) -> None:
        super().__init__(shape=None, dtype=None)
        self.keys = keys

    def contains(self, x: Any) -> bool:
        return isinstance(x, dict) and all(key in x for key in self.keys)

    @property
    def is_np_flattenable(self) -> bool:
        return False


class SearchEnv(gymnasium.Env[dict[str, Any], dict[str, Any]]):
    """One query per episode against a :class:`SearchEngine`.

    Set :attr:`query` (and, to score the search, :attr:`relevant`: the sources judged
    relevant) before ``reset``. The action is a search request
    ``{"query", "k", "mode", "rerank"}``; the step's info holds the hits as dicts.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's own name

    def __init__(self, engine: SearchEngine, *, reranker: Reranker | None = None) -> None:
        self.engine = engine
        self.reranker = reranker
        self.query = ""
        self.relevant: frozenset[str] = frozenset()
        self.last_hits: list[SearchHit] = []
        self.action_space = _AnySpace("query", "k", "mode")
        self.observation_space = _AnySpace("query", "hits")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        self.last_hits = []
        return {"query": self.query, "hits": []}, {}

    def step(
        self, action: dict[str, Any]
    ) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if action["mode"] not in _MODES:
            raise EnvError(
                f"action mode must be one of {', '.join(_MODES)}, got {action['mode']!r}"
            )
        rerank = self.reranker if action.get("rerank") else None
        hits = self.engine.search(
            action["query"], k=action["k"], mode=action["mode"], rerank=rerank
        )
        self.last_hits = hits
        rank = next((n for n, hit in enumerate(hits, 1) if hit.source in self.relevant), None)
        reward = 0.0 if rank is None else 1.0 / rank
        info = {
            "hits": [hit.to_dict() for hit in hits],
            "first_relevant_rank": rank,
            "is_success": None if not self.relevant else rank is not None,
        }
        observation = {"query": action["query"], "hits": [hit.source for hit in hits]}
        return observation, reward, True, False, info


class QueryPerception(PerceptionModule):
    """The query with its whitespace collapsed."""

    def perceive(self, observation: Any) -> Any:
        query = re.sub(r"\s+", " ", str(observation["query"])).strip()
        if not query:
            raise ConfigError("query", "must not be empty")
        return {"query": query}


class SearchPlanning(PlanningModule):
    """A fixed search policy: ``k`` results by ``mode``, re-ranked or not."""

    def __init__(self, *, k: int = 5, mode: str = "hybrid", rerank: bool = False) -> None:
        if mode not in _MODES:
            raise ConfigError("mode", f"must be one of {', '.join(_MODES)}, got {mode!r}")
        self.k, self.mode, self.rerank = k, mode, rerank

    def decide(self, features: Any) -> Decision:
        action = {"query": features["query"], "k": self.k, "mode": self.mode, "rerank": self.rerank}
        reason = f"{self.mode} top-{self.k}" + (", re-ranked" if self.rerank else "")
        return Decision(action, reason)


def build_search_agent(
    engine: SearchEngine,
    *,
    k: int = 5,
    mode: str = "hybrid",
    reranker: Reranker | None = None,
    name: str = "search",
) -> Agent:
    """The search agent over ``engine`` (re-ranking when a ``reranker`` is given)."""
    return Agent(
        QueryPerception(),
        SearchPlanning(k=k, mode=mode, rerank=reranker is not None),
        ExecutionModule(SearchEnv(engine, reranker=reranker)),
        LearningModule(OutcomeRecorder()),
        name=name,
    )


def ask(
    agent: Agent, query: str, *, relevant: Iterable[str] = ()
) -> tuple[list[SearchHit], EpisodeResult]:
    """Run ``query`` as one episode; returns the hits and the episode's result."""
    env = agent.execution_module.env
    if not isinstance(env, SearchEnv):
        raise ConfigError("agent", "is not a search agent (its environment is no SearchEnv)")
    env.query, env.relevant = query, frozenset(relevant)
    result = agent.run_episode()
    return list(env.last_hits), result
