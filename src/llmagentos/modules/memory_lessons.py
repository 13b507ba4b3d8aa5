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

__all__ = [
    "EFFECTS",
    "Effect",
    "Lesson",
    "LessonTracker",
    "StepSeen",
    "distill",
    "episode_outcome",
    "lesson_key",
    "lesson_memory",
]

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


def _phrase(effect: Effect, bumped: bool | None, extent: int) -> str:
    if effect == "blocked":
        return "hit a wall" if bumped else "changed nothing"
    if effect == "loop":
        return f"led in a loop back to an earlier state ({extent} steps)"
    if effect == "time_limit":
        return "led to the time limit"
    return f"reached the goal in {extent} steps"


class LessonTracker:
    """Finds an episode's lessons step by step, as :func:`distill` does at its end.

    :meth:`add` takes the next step and returns the lessons it already proves
    (``blocked``, ``loop``), so a learner can write them at once and the rest of the
    same episode avoids the mistake; :meth:`finish` adds what only the episode's end
    tells (``success`` routes, which also clear the loops a route went through, and
    ``time_limit``).
    """

    def __init__(self) -> None:
        self.steps: list[StepSeen] = []
        self.found: dict[tuple[str, int, Effect], int] = {}
        """(state, action, effect) -> extent (loop length, or steps to the goal)."""
        self._first_seen: dict[str, int] = {}
        self._last_seen: dict[str, int] = {}
        self._cycled: set[tuple[str, int]] = set()

    def add(self, step: StepSeen) -> list[tuple[str, int, Effect]]:
        """Take the next step; the (state, action, effect) lessons it proved, new ones only."""
        t = len(self.steps)
        self.steps.append(step)
        self._first_seen.setdefault(step.state, t)
        self._last_seen[step.state] = t
        if step.next_state == step.state:
            return self._note((step.state, step.action, "blocked"), 1)
        j = self._first_seen.get(step.next_state)
        if j is None:
            return []
        # Back to a state of this episode: the step that went back is blamed, once per
        # cycle. The steps before it led somewhere new when taken; blaming them all at
        # once pushes the agent back along a route that was right (seen on TextMaze
        # with a stand-in LLM).
        pair = (step.state, step.action)
        if pair not in self._cycled:
            self._cycled.update((s.state, s.action) for s in self.steps[j : t + 1])
            return self._note((*pair, "loop"), t + 1 - j)
        # Round the same cycle again: the blame so far did not get the agent out (the
        # step back was the only way out of a dead end, say), so one more step of this
        # lap is blamed, the earliest not blamed yet: the way into the dead end.
        lap = self.steps[self._last_seen[step.next_state] : t + 1]
        for earlier in lap:
            key: tuple[str, int, Effect] = (earlier.state, earlier.action, "loop")
            if key not in self.found and earlier.next_state != earlier.state:
                return self._note(key, len(lap))
        return []

    def _note(self, key: tuple[str, int, Effect], extent: int) -> list[tuple[str, int, Effect]]:
        if key in self.found:
            return []
        self.found[key] = extent
        return [key]

    def finish(self, outcome: str) -> dict[tuple[str, int, Effect], int]:
        """Every lesson of the episode, given how it ended (see :func:`episode_outcome`)."""
        found = dict(self.found)
        steps = self.steps
        if outcome == "success":
            last_visit = {step.state: t for t, step in enumerate(steps)}
            for state, t in last_visit.items():
                action = steps[t].action
                found.pop((state, action, "loop"), None)  # it led on, at the end
                found[(state, action, "success")] = len(steps) - t
        elif outcome == "time_limit" and not found:
            found[(steps[-1].state, steps[-1].action, "time_limit")] = len(steps)
        return found


def lesson_memory(
    state: str,
    action: int,
    effect: Effect,
    extent: int,
    *,
    env: str,
    action_names: Sequence[str],
    episode: str,
    outcome: str,
    bumped: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> NewMemory:
    """One lesson as a skill memory: the text quotes the state, the key makes it idempotent."""
    name = action_names[action] if 0 <= action < len(action_names) else str(action)
    digest = state_digest(state)
    meta: dict[str, Any] = dict(metadata or {}) | {
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
    meta["what"] = what = f"moving {name} {_phrase(effect, bumped, extent)}"
    return NewMemory(
        f"At {json.dumps(state)}, {what}.", meta, key=lesson_key(env, state, name, effect)
    )


def lesson_key(env: str, state: str, action_name: str, effect: str) -> str:
    """``<env>|<state digest>|<action>|<effect>``: one lesson per (state, action, effect)."""
    return f"{env}|{state_digest(state)}|{action_name}|{effect}"


def distill(
    steps: Sequence[StepSeen],
    *,
    env: str,
    action_names: Sequence[str],
    episode: str,
    metadata: Mapping[str, Any] | None = None,
    tracker: LessonTracker | None = None,
) -> list[NewMemory]:
    """The episode's lessons as skill memories (see the module docstring).

    Args:
        steps: the episode's steps in order.
        env: the environment's id (metadata ``env`` and the key's first part).
        action_names: names of the actions, by index.
        episode: the episode's tag (metadata ``episode``).
        metadata: more metadata every lesson carries (a layout, a seed).
        tracker: a tracker that has already seen exactly these steps (a learner's own),
            so they are not gone through again.
    """
    outcome = episode_outcome(steps)
    if tracker is None:
        tracker = LessonTracker()
        for step in steps:
            tracker.add(step)
    lessons = []
    for (state, action, effect), extent in tracker.finish(outcome).items():
        step = next(s for s in steps if s.state == state and s.action == action)
        lessons.append(
            lesson_memory(
                state,
                action,
                effect,
                extent,
                env=env,
                action_names=action_names,
                episode=episode,
                outcome=outcome,
                bumped=step.bumped,
                metadata=metadata,
            )
        )
    return lessons
