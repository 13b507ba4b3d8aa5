"""Lessons: what an episode taught, distilled by rule (no model call) into skill memories.

From one episode's steps, :func:`distill` writes one lesson per (state, action, effect):

* ``blocked``: the action left the state unchanged ("hit a wall" when the environment's
  info says ``bumped``);
* ``loop``: the action went back to a state the episode had already visited (the learner
  counts the episodes that blamed it, see ``times``);
* ``time_limit``: the episode ran out of time and neither rule above explains why (the
  last action is blamed);
* ``success``: the episode reached its goal; every state's action at its *last* visit
  (a loop-free route) is kept, with the steps it still took to the goal.

Each lesson is a :class:`~llmagentos.memory.NewMemory` with the state's text quoted in
the text (so search finds it), metadata naming the environment, the state's digest, the
action, the effect and the episode, and a key ``<env>|<state>|<action>|<effect>``: the
same lesson learned again replaces itself, so re-runs add nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from llmagentos.memory.types import MemoryItem, NewMemory
from llmagentos.modules.memory_perception import state_digest

__all__ = ["EFFECTS", "Effect", "Lesson", "StepSeen", "distill", "episode_outcome"]

Effect = Literal["blocked", "loop", "time_limit", "success", "model"]
EFFECTS: tuple[Effect, ...] = get_args(Effect)


@dataclass(frozen=True, slots=True)
class StepSeen:
    """One step as the learner keeps it: texts and the action's index."""

    state: str
    action: int
    reward: float
    next_state: str
    bumped: bool | None = None
    terminated: bool = False
    truncated: bool = False
    success: bool | None = None


@dataclass(frozen=True, slots=True)
class Lesson:
    """A lesson read back from memory (see :meth:`of`)."""

    id: str
    text: str
    effect: Effect
    state: str
    action: str | None
    action_index: int | None
    steps_to_goal: int | None = None
    times: int = 1
    """Episodes that taught it (``loop`` and ``time_limit`` lessons count them)."""
    what: str = ""
    """What happened, without the state ("moving south hit a wall"); a model lesson's text."""

    @classmethod
    def of(cls, item: MemoryItem) -> Lesson | None:
        """The lesson ``item`` holds, or ``None`` when it holds none."""
        meta = item.metadata
        effect = meta.get("lesson")
        if effect not in EFFECTS or not isinstance(meta.get("state"), str):
            return None
        index = meta.get("action_index")
        steps = meta.get("steps_to_goal")
        return cls(
            id=item.id,
            text=item.text,
            effect=effect,
            state=meta["state"],
            action=meta.get("action") if isinstance(meta.get("action"), str) else None,
            action_index=index if type(index) is int else None,
            steps_to_goal=steps if type(steps) is int else None,
            times=len(episodes) if isinstance(episodes := meta.get("episodes"), list) else 1,
            what=str(meta.get("what") or item.text),
        )

    @property
    def label(self) -> str:
        """How a decision's reason names the lesson: ``#<id> <action> <effect>``."""
        what = f"{self.action} {self.effect}" if self.action else self.effect
        return f"#{self.id[:8]} {what}"


def episode_outcome(steps: Sequence[StepSeen]) -> str:
    """``success``, ``time_limit``, ``failure`` (terminated without success) or ``cut``."""
    if not steps:
        return "cut"
    last = steps[-1]
    if last.terminated:
        return "success" if last.success is not False else "failure"
    return "time_limit" if last.truncated else "cut"


def _phrase(effect: Effect, step: StepSeen, extent: int) -> str:
    if effect == "blocked":
        return "hit a wall" if step.bumped else "changed nothing"
    if effect == "loop":
        return f"led in a loop back to an earlier state ({extent} steps)"
    if effect == "time_limit":
        return "led to the time limit"
    return f"reached the goal in {extent} steps"


def _found(steps: Sequence[StepSeen], outcome: str) -> dict[tuple[str, int, Effect], int]:
    """(state, action, effect) -> extent (loop length or steps to the goal)."""
    found: dict[tuple[str, int, Effect], int] = {}
    first_seen: dict[str, int] = {}
    cycled_pairs: set[tuple[str, int]] = set()
    for t, step in enumerate(steps):
        first_seen.setdefault(step.state, t)
        if step.next_state == step.state:
            found.setdefault((step.state, step.action, "blocked"), 1)
            continue
        j = first_seen.get(step.next_state)
        if j is not None:
            # Back to a state of this episode: the step that went back is blamed, once
            # per cycle (going round again blames nothing new). The steps before it led
            # somewhere new when taken; blaming them too pushes the agent back along a
            # route that was right (seen on TextMaze with a stand-in LLM).
            pair = (step.state, step.action)
            if pair not in cycled_pairs:  # a new cycle, not the last one going round again
                found.setdefault((step.state, step.action, "loop"), t + 1 - j)
            cycled_pairs.update((s.state, s.action) for s in steps[j : t + 1])
    if outcome == "success":
        last_visit = {step.state: t for t, step in enumerate(steps)}
        for state, t in last_visit.items():
            action = steps[t].action
            found.pop((state, action, "loop"), None)  # it led on, at the end
            found[(state, action, "success")] = len(steps) - t
    elif outcome == "time_limit" and not found:
        found[(steps[-1].state, steps[-1].action, "time_limit")] = len(steps)
    return found


def distill(
    steps: Sequence[StepSeen],
    *,
    env: str,
    action_names: Sequence[str],
    episode: str,
    metadata: Mapping[str, Any] | None = None,
) -> list[NewMemory]:
    """The episode's lessons as skill memories (see the module docstring).

    Args:
        steps: the episode's steps in order.
        env: the environment's id (metadata ``env`` and the key's first part).
        action_names: names of the actions, by index.
        episode: the episode's tag (metadata ``episode``).
        metadata: more metadata every lesson carries (a layout, a seed).
    """
    outcome = episode_outcome(steps)
    extra = dict(metadata or {})
    lessons = []
    for (state, action, effect), extent in _found(steps, outcome).items():
        name = action_names[action] if 0 <= action < len(action_names) else str(action)
        step = next(s for s in steps if s.state == state and s.action == action)
        digest = state_digest(state)
        meta: dict[str, Any] = extra | {
            "lesson": effect,
            "state": digest,
            "action": name,
            "action_index": action,
            "env": env,
            "outcome": outcome,
            "episode": episode,
        }
        if effect == "success":
            meta["steps_to_goal"] = extent
        else:
            meta["episodes"] = [episode]
        meta["what"] = what = f"moving {name} {_phrase(effect, step, extent)}"
        text = f"At {json.dumps(state)}, {what}."
        lessons.append(NewMemory(text, meta, key=f"{env}|{digest}|{name}|{effect}"))
    return lessons
