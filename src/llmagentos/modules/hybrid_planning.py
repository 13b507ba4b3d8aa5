"""The LLM proposes, Q-learning critiques: a planner that hands over from one to the other.

In a state the agent knows little about, a language model's reading of the observation
is a far better guess than a random action; once the Q-table has seen the state often
enough to tell its actions apart, its values are the better judge. The rule, per step:

1. training only: with probability ``epsilon``, a random action;
2. **Q is confident**: the state was visited ``trust_after`` times or more, its best
   Q-value beats the second by more than ``margin``, and that best action has been
   tried there (an untried action's value is only the table's initial value): Q's
   best action;
3. **the state keeps coming back** within the episode (its ``loop_after``-th visit): of
   the actions taken there least often this episode, the best by Q. The LLM's advice is
   a fixed function of the state text (temperature 0, cached), so a state seen again
   and again means that following it goes round in a circle, or into a wall, and would
   until the time limit. In evaluation, where nothing is learned, this step comes
   before step 2: a confident but wrong Q would loop just the same;
4. otherwise: the LLM's proposal.

Every decision carries the Q-values as scores, a reason naming its source, and
details for explanations: the source, each action's visits, the model's proposal (the
cached one when Q decided without asking) and what overruled what.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from llmagentos.exceptions import ConfigError
from llmagentos.modules.base import Component, run_sync
from llmagentos.modules.llm_planning import (
    Fallback,
    LLMPlanningModule,
    Proposal,
    action_names_of,
    prompt_parts_of,
    resolve_model,
)
from llmagentos.modules.planning import PlanningModule
from llmagentos.rl.qtable import QTable
from llmagentos.rl.schedules import Clocked, ScheduleLike, as_schedule, check_range
from llmagentos.types import Decision, Features

if TYPE_CHECKING:
    from llmagentos.llm.base import Model

__all__ = ["HybridExploration", "HybridPlanningModule", "hybrid_planning"]

SOURCES = ("explore", "q", "loop", "llm", "fallback")


class HybridExploration(Clocked):
    """The hybrid's epsilon (a number or schedule), random generator and step counters."""

    def __init__(self, epsilon: ScheduleLike = 0.05, *, seed: int | None = None) -> None:
        self.epsilon = check_range(as_schedule(epsilon, field="epsilon"), "epsilon", low=0, high=1)
        self.rng = random.Random(seed)

    def reset(self, *, seed: int | None = None) -> None:
        if seed is not None:
            self.rng.seed(seed)
        super().reset(seed=seed)


class HybridPlanningModule(PlanningModule):
    """Follows an LLM where the Q-table is unsure, and the Q-table where it is confident.

    See the module docstring for the rule. The Q-table is shared with the learner (a
    growing table keyed by the observation text); the LLM planner's proposals are
    cached by prompt, so a revisited state does not ask the model again.

    Args:
        q_table: the action values the learner updates.
        llm: an :class:`LLMPlanningModule`, or a model to build one with
            (``action_names`` and ``cache_size`` then apply).
        trust_after: visits of a state (all actions together) before Q may decide there.
        margin: how far the best Q-value must beat the second for Q to be confident, in
            reward units (0: strictly). The untried-action check already keeps early
            values from overruling the LLM; a margin on top kept Q from overruling
            advice it had found wrong (on TextMaze, with alpha 0.5, a first step and a
            first bump into a wall are 0.5 apart), and the hybrid then followed a
            wrong model for longer.
        epsilon: exploration probability while training (a number or a schedule).
        loop_after: break loops in a state from its ``loop_after``-th visit of the
            episode on (0: never).
        action_names: names of the actions, when ``llm`` is a model.
        cache_size: proposals to remember, when ``llm`` is a model (0: none).
        seed: seed of the exploration's random generator (and of the LLM's fallback).
    """

    def __init__(
        self,
        q_table: QTable,
        llm: LLMPlanningModule | Model,
        *,
        trust_after: int = 5,
        margin: float = 0.0,
        epsilon: ScheduleLike = 0.05,
        loop_after: int = 3,
        action_names: Sequence[str] | None = None,
        cache_size: int = 1024,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if trust_after < 0:
            raise ConfigError("trust_after", f"must be >= 0 (got {trust_after})")
        if loop_after < 0:
            raise ConfigError("loop_after", f"must be >= 0 (got {loop_after})")
        if margin < 0:
            raise ConfigError("margin", f"must be >= 0 (got {margin})")
        if not isinstance(llm, LLMPlanningModule):
            names = action_names or action_names_of(None, q_table.n_actions)
            llm = LLMPlanningModule(llm, names, cache_size=cache_size, seed=seed)
        if len(llm.action_names) != q_table.n_actions:
            raise ConfigError(
                "action_names",
                f"the LLM chooses among {len(llm.action_names)} actions, the Q-table has "
                f"{q_table.n_actions}",
            )
        self.q_table = q_table
        self.llm = llm
        self.trust_after = trust_after
        self.margin = float(margin)
        self.loop_after = loop_after
        self.exploration = HybridExploration(epsilon, seed=seed)
        self.counts = dict.fromkeys(SOURCES, 0)
        """How many decisions each source made (``explore``, ``q``, ``loop``, ``llm``,
        ``fallback``)."""
        # This episode's visits per state, and the actions chosen in each state.
        self._visited: dict[Any, int] = {}
        self._taken: dict[Any, list[int]] = {}

    def components(self) -> Iterable[Component]:
        return (self.exploration, *self.llm.components())

    def reset(self, *, seed: int | None = None) -> Any:
        self._visited.clear()
        self._taken.clear()
        self.llm.reset(seed=seed)
        self.exploration.reset(seed=seed)

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        self.llm.train(mode)

    # -- the rule -------------------------------------------------------------------------

    def _without_llm(self, features: Features) -> tuple[Decision | None, str, list[float]]:
        """Steps 1-3 of the rule: a decision, or why the LLM should decide, and the scores."""
        scores = list(self.q_table.values(features))
        seen = self._visited
        seen[features] = times = seen.get(features, 0) + 1
        looping = bool(self.loop_after) and times >= self.loop_after
        if self.training:
            exploration = self.exploration
            epsilon = exploration.now(exploration.epsilon)
            exploration.steps += 1
            if epsilon and exploration.rng.random() < epsilon:
                self.counts["explore"] += 1
                action = exploration.rng.randrange(len(scores))
                reason = f"explore: random action (epsilon={epsilon:.3f})"
                details = self._details(features, scores, "explore", action, epsilon=epsilon)
                return Decision(action, reason, scores, details), "", scores
        elif looping:
            # In evaluation nothing is learned: a loop through a state where Q is
            # confident (and wrong) would last until the time limit, so it is broken first.
            return self._break_loop(features, times, scores), "", scores
        decision, why = self._confident_q(features, scores)
        if decision is None and looping:
            decision = self._break_loop(features, times, scores)
        return decision, why, scores

    def _confident_q(self, features: Features, scores: list[float]) -> tuple[Decision | None, str]:
        """Q's decision if it is confident, else why it is not."""
        q = self.q_table
        row = q.row_of(features)
        visits = 0 if row is None else sum(q.visits[row])
        if row is None or visits < self.trust_after:
            return None, f"q unsure: {visits} visits"
        best = max(scores)
        action = scores.index(best)
        second = max((v for i, v in enumerate(scores) if i != action), default=float("-inf"))
        if best - second <= self.margin:
            tied = f"within {self.margin:g}" if self.margin else "tied"
            return None, f"q unsure: top Q-values {tied}"
        # An untried action's value is only the table's initial value, not evidence: Q
        # overrides the LLM only with an action it has tried here.
        if not q.visits[row][action]:
            return None, "q unsure: its best action is untried"
        self.counts["q"] += 1
        reason = f"q: confident (visits {visits}), Q={best:.2f}"
        return Decision(action, reason, scores, self._details(features, scores, "q", action)), ""

    def _break_loop(self, features: Features, times: int, scores: list[float]) -> Decision:
        """Of the actions taken here least often this episode, the best by Q.

        Cycling through the actions gets out of any loop in a deterministic world, where
        Q's best action alone might be a bump into a wall, repeated.
        """
        self.counts["loop"] += 1
        taken = self._taken.get(features) or [0] * len(scores)
        fewest = min(taken)
        fresh = [i for i, n in enumerate(taken) if n == fewest]
        top = max(scores[i] for i in fresh)
        ties = [i for i in fresh if scores[i] == top]
        action = ties[self.exploration.rng.randrange(len(ties))] if len(ties) > 1 else ties[0]
        reason = f"q: breaking a loop (state seen {times} times this episode), Q={top:.2f}"
        details = self._details(features, scores, "loop", action, seen=times)
        return Decision(action, reason, scores, details)

    def _from_proposal(
        self, features: Features, proposal: Proposal, why: str, scores: list[float]
    ) -> Decision:
        action = proposal.action
        if proposal.fallback:
            self.counts["fallback"] += 1
            details = self._details(features, scores, "fallback", action, proposal, unsure=why)
            return Decision(action, f"fallback: {proposal.reason} ({why})", scores, details)
        self.counts["llm"] += 1
        name = self.llm.action_names[action]
        said = f"{name}, {proposal.reason}" if proposal.reason else name
        details = self._details(features, scores, "llm", action, proposal, unsure=why)
        return Decision(action, f"llm: {said} ({why})", scores, details)

    # -- explanations ---------------------------------------------------------------------

    def _details(
        self,
        features: Features,
        scores: list[float],
        source: str,
        action: int,
        proposal: Proposal | None = None,
        *,
        unsure: str = "",
        epsilon: float | None = None,
        seen: int | None = None,
    ) -> dict[str, Any]:
        """What this decision weighed, for ``llmagentos explain`` and the dashboard."""
        q = self.q_table
        row = q.row_of(features)
        visits = [0] * q.n_actions if row is None else list(q.visits[row])
        names = self.llm.action_names
        if proposal is None and source != "explore":
            proposal = self.llm.peek(features)  # what the model said here before, if asked
        details: dict[str, Any] = {
            "source": source,
            "action_names": list(names),
            "q_values": scores,
            "visits": visits,
            "trust_after": self.trust_after,
            "margin": self.margin,
        }
        if proposal is not None:
            details["proposal"] = {
                "action": proposal.action,
                "name": names[proposal.action],
                "reason": proposal.reason,
                "from": proposal.source,
            }
        if unsure:
            details["q_unsure"] = unsure
        if epsilon is not None:
            details["epsilon"] = epsilon
        if seen is not None:
            details["seen_this_episode"] = seen
        overruled = _overruled(
            source, action, scores=scores, visits=visits, proposal=proposal, names=names
        )
        if overruled:
            details["overruled"] = overruled
        return details

    def _taking(self, features: Features, decision: Decision) -> Decision:
        taken = self._taken.get(features)
        if taken is None:
            taken = self._taken[features] = [0] * self.q_table.n_actions
        taken[decision.action] += 1
        return decision

    def decide(self, features: Features) -> Decision:
        decision, why, scores = self._without_llm(features)
        if decision is None:
            # A cached proposal needs no event loop: only a real model call pays for one.
            proposal = self.llm.cached(features) or run_sync(self.llm.apropose(features))
            decision = self._from_proposal(features, proposal, why, scores)
        return self._taking(features, decision)

    async def adecide(self, features: Features) -> Decision:
        decision, why, scores = self._without_llm(features)
        if decision is None:
            proposal = await self.llm.apropose(features)
            decision = self._from_proposal(features, proposal, why, scores)
        return self._taking(features, decision)


def _overruled(
    source: str,
    action: int,
    *,
    scores: list[float],
    visits: list[int],
    proposal: Proposal | None,
    names: Sequence[str],
) -> str | None:
    """Which advice lost to the chosen action, and why, in a sentence (``None``: none)."""
    best = scores.index(max(scores))
    tried = visits[best] > 0
    said = None if proposal is None or proposal.fallback else proposal
    if source == "q":
        if said is not None and said.action != action:
            return (
                f"Q overruled the model: the model had proposed {names[said.action]} "
                f"here, Q's values (after {sum(visits)} visits) favour {names[action]}"
            )
        return None
    if source == "explore":
        return f"exploration overruled the rule: a random action ({names[action]})"
    if source == "loop":
        if action != best:
            return (
                f"loop breaking overruled Q's best action {names[best]}: the state keeps "
                f"coming back this episode, so a less-taken action ({names[action]}) is tried"
            )
        return None
    if source == "llm" and tried and best != action:
        return (
            f"the model overruled Q's best value ({names[best]}, Q={scores[best]:.2f}): "
            "Q was not yet confident"
        )
    if source == "fallback" and proposal is not None:
        return f"the model failed ({proposal.reason}), so the fallback chose {names[action]}"
    return None


def hybrid_planning(
    *,
    q_table: QTable | None = None,
    model: Model | str = "local:smollm2",
    trust_after: int = 5,
    epsilon: ScheduleLike = 0.05,
    margin: float = 0.0,
    loop_after: int = 3,
    cache_size: int = 1024,
    temperature: float = 0.0,
    fallback: Fallback = "random",
    env: Any = None,
    seed: int | None = None,
    agent: str = "agent",
) -> HybridPlanningModule:
    """An LLM proposes actions in unfamiliar states; Q-learning decides once confident."""
    if q_table is None:
        raise ConfigError("q_table", "the hybrid planner needs a Q-table (a Discrete action space)")
    llm = LLMPlanningModule(
        resolve_model(model, agent=agent),
        action_names_of(env, q_table.n_actions),
        temperature=temperature,
        fallback=fallback,
        cache_size=cache_size,
        seed=seed,
        **prompt_parts_of(env),
    )
    return HybridPlanningModule(
        q_table,
        llm,
        trust_after=trust_after,
        margin=margin,
        epsilon=epsilon,
        loop_after=loop_after,
        seed=seed,
    )
