"""A learner that writes what the agent experienced into its memory.

:class:`MemoryLearning` keeps the steps of the current episode. A lesson a step already
proves (an action that hit a wall, one that led back round a loop) is written at once,
so the rest of the same episode can avoid it (``online``). When the episode ends (or the
next ``reset`` cuts it short) it writes to the agent's memory:

* **episodic**: a summary of the episode (outcome, steps, return, where it started),
  and with ``record_steps`` one record per step;
* **skill**: the lessons :func:`~llmagentos.modules.memory_lessons.distill` finds by rule,
  with no model call ("At <state>, moving south hit a wall.");
* optionally, for a failed episode, one lesson a language model writes from the
  episode's last steps: explicit (``lesson_model``), bounded per call (``lesson_tokens``)
  and, given a kernel handle with a ``token_budget``, in total. Its tokens are counted
  in :attr:`MemoryLearning.model_tokens`; a spent budget stops the model lessons, not
  the run.

Every write has a key (``<env>|<run>|ep<n>|...`` for episodes, the lesson's own key for
lessons), so running the same episodes again replaces what they wrote instead of adding
to it. Another learner (``optimizer``, ``reward_fn``) may run alongside, as in
:class:`~llmagentos.modules.learning.LearningModule`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmagentos.exceptions import BudgetExceeded, ConfigError, MemoryNotFound, ModelError
from llmagentos.memory.spaces import AgentMemory
from llmagentos.memory.types import MemoryItem, NewMemory
from llmagentos.modules.base import run_sync
from llmagentos.modules.learning import LearningModule, PolicyOptimizer, RewardFunction
from llmagentos.modules.memory_lessons import (
    LessonTracker,
    StepSeen,
    distill,
    episode_outcome,
    lesson_memory,
)
from llmagentos.modules.memory_perception import state_digest, state_text
from llmagentos.types import Transition

if TYPE_CHECKING:
    from llmagentos.llm.base import Model

__all__ = ["MemoryLearning"]

_KEEP_EPISODES = 50  # episodes a lesson remembers having been taught by
_LESSON_PROMPT = (
    "A {task} failed ({outcome}). Its last steps, as (state, action, what followed):\n"
    "{steps}\nWrite one short lesson for next time, naming the state and the action to avoid."
)


class MemoryLearning(LearningModule):
    """Writes episode summaries and rule-distilled lessons into ``memory``.

    Args:
        memory: the agent's memory (:meth:`MemoryManager.for_agent
            <llmagentos.memory.MemoryManager.for_agent>`).
        env: the environment's id, in every item's metadata and key.
        action_names: the actions' names, by index.
        metadata: more metadata for every item (a layout name, a seed).
        run: a tag for this run, in episode keys (the same run again replaces its items).
        record_steps: also write one episodic record per step.
        online: write each ``blocked``/``loop`` lesson as soon as a step proves it (off:
            every lesson at the episode's end, so only later trials can use it).
        lessons: write rule-distilled lessons (off: only the episodic summaries).
        lesson_model: a model that writes one more lesson per failed episode (default:
            none, no model call); pass a kernel handle with ``token_budget`` to bound it.
        lesson_tokens: the reply's token limit for a model lesson.
        task: what the agent is, for the model lesson's prompt.
        optimizer: a policy optimizer to run as well (e.g. Q-learning).
        reward_fn: its reward function.
    """

    def __init__(
        self,
        memory: AgentMemory,
        *,
        env: str,
        action_names: Sequence[str],
        metadata: Mapping[str, Any] | None = None,
        run: str = "run",
        record_steps: bool = False,
        online: bool = True,
        lessons: bool = True,
        lesson_model: Model | None = None,
        lesson_tokens: int = 64,
        task: str = "agent",
        optimizer: PolicyOptimizer | None = None,
        reward_fn: RewardFunction | None = None,
    ) -> None:
        super().__init__(optimizer, reward_fn=reward_fn)
        if not action_names:
            raise ConfigError("action_names", "need the actions' names")
        if lesson_tokens < 1:
            raise ConfigError("lesson_tokens", f"must be >= 1 (got {lesson_tokens})")
        self.memory = memory
        self.env = env
        self.action_names = tuple(str(name) for name in action_names)
        self.metadata = dict(metadata or {})
        self.run = run
        self.record_steps = record_steps
        self.online = online
        self.lessons = lessons
        self.lesson_model = lesson_model
        self.lesson_tokens = lesson_tokens
        self.task = task
        self.episodes = 0
        """Episodes written so far."""
        self.lessons_written = 0
        """Lesson writes (a lesson learned again counts again; memory holds it once)."""
        self.model_tokens = 0
        """Tokens the model lessons used (prompt and reply)."""
        self.model_lessons = 0
        self.budget_spent = False
        self._steps: list[StepSeen] = []
        self._tracker = LessonTracker()
        self._early: dict[str, MemoryItem | None] = {}
        """Lessons this episode wrote before its end, by key: what memory held before."""

    # -- the loop -------------------------------------------------------------------------

    def update(self, transition: Transition) -> dict[str, Any] | None:
        report = self._run_components(transition) if self.optimizer is not None else None
        info = transition.info or {}
        bumped = info.get("bumped")
        success = info.get("is_success")
        step = StepSeen(
            state=state_text(transition.features),
            action=int(transition.action),
            reward=float(transition.reward),
            next_state=state_text(transition.next_features),
            bumped=bumped if isinstance(bumped, bool) else None,
            terminated=transition.terminated,
            truncated=transition.truncated,
            success=success if isinstance(success, bool) else None,
        )
        self._steps.append(step)
        proved = self._tracker.add(step)
        if self.online and self.lessons and proved and not transition.done:
            self._write_now(proved, step)
        if not transition.done:
            return report
        written = self.flush()
        return written if report is None else {**report, "memory": written}

    def reset(self, *, seed: int | None = None) -> Any:
        # An episode cut short by the caller's step limit never said it was done.
        self.flush()
        return super().reset(seed=seed)

    # -- writing --------------------------------------------------------------------------

    def _tag(self) -> str:
        return f"{self.run}:ep{self.episodes}"

    def _write_now(self, proved: Sequence[tuple[str, int, Any]], step: StepSeen) -> None:
        """Write the lessons a step proved, before the episode ends."""
        lessons = [
            lesson_memory(
                state,
                action,
                effect,
                self._tracker.found[(state, action, effect)],
                env=self.env,
                action_names=self.action_names,
                episode=self._tag(),
                outcome="running",
                bumped=step.bumped,
                metadata=self.metadata,
            )
            for state, action, effect in proved
        ]
        for lesson in lessons:
            if lesson.key is not None and lesson.key not in self._early:
                self._early[lesson.key] = self._stored(lesson.key)
        self._merge_episodes(lessons)
        self.memory.skills.put(lessons)

    def _stored(self, key: str) -> MemoryItem | None:
        try:
            return self.memory.skills.get_by_key(key)
        except MemoryNotFound:
            return None

    def _undo_early(self, early: Mapping[str, MemoryItem | None], keep: set[str]) -> None:
        """Put back what was there before a lesson written early that the episode's end
        disproved (a loop the route to the goal went through after all)."""
        for key, before in early.items():
            if key in keep:
                continue
            now = self._stored(key)
            if now is None:
                continue
            if before is None:
                self.memory.skills.delete(now.id)
            else:
                self.memory.skills.update(now.id, text=before.text, metadata=before.metadata)

    def flush(self) -> dict[str, Any] | None:
        """Write what the episode so far taught; ``None`` when there is nothing to write."""
        steps, self._steps = self._steps, []
        tracker, self._tracker = self._tracker, LessonTracker()
        early, self._early = self._early, {}
        if not steps:
            return None
        tag = self._tag()
        self.episodes += 1
        outcome = episode_outcome(steps)
        lessons = (
            distill(
                steps,
                env=self.env,
                action_names=self.action_names,
                episode=tag,
                metadata=self.metadata,
                tracker=tracker,
            )
            if self.lessons
            else []
        )
        if early:
            self._undo_early(early, {lesson.key for lesson in lessons if lesson.key})
        if self.lesson_model is not None and outcome != "success" and not self.budget_spent:
            lesson = self._model_lesson(steps, outcome, tag)
            if lesson is not None:
                lessons.append(lesson)
        if lessons:
            self._merge_episodes(lessons)
            self.memory.skills.put(lessons)
            self.lessons_written += len(lessons)
        self.memory.episodic.put(self._episodic(steps, outcome, tag, len(lessons)))
        return {"episode": tag, "outcome": outcome, "lessons": len(lessons)}

    def _merge_episodes(self, lessons: Sequence[NewMemory]) -> None:
        """A lesson learned again keeps the episodes that taught it before (a set: the
        same episode run again adds nothing), so a planner can tell a loop seen in
        many trials from one seen once."""
        for lesson in lessons:
            mine = lesson.metadata.get("episodes")
            if lesson.key is None or not isinstance(mine, list):
                continue
            try:
                before = self.memory.skills.get_by_key(lesson.key).metadata.get("episodes")
            except MemoryNotFound:
                continue
            if isinstance(before, list):
                merged = list(dict.fromkeys([*before, *mine]))
                lesson.metadata["episodes"] = merged[-_KEEP_EPISODES:]

    def _episodic(
        self, steps: Sequence[StepSeen], outcome: str, tag: str, n_lessons: int
    ) -> list[NewMemory]:
        total = sum(step.reward for step in steps)
        meta = self.metadata | {"env": self.env, "episode": tag, "outcome": outcome}
        prefix = f"{self.env}|{tag}"
        summary = NewMemory(
            f"Episode {tag} on {self.env}: {outcome.replace('_', ' ')} after {len(steps)} "
            f"steps (return {total:g}), starting at {json.dumps(steps[0].state)}; "
            f"{n_lessons} lessons.",
            meta | {"record": "episode", "steps": len(steps), "return": total},
            key=f"{prefix}|summary",
        )
        if not self.record_steps:
            return [summary]
        records = [
            NewMemory(
                f"At {json.dumps(step.state)}, moved {self.action_names[step.action]} "
                f"(reward {step.reward:g}), then at {json.dumps(step.next_state)}.",
                meta | {"record": "step", "step": t, "state": state_digest(step.state)},
                key=f"{prefix}|step{t}",
            )
            for t, step in enumerate(steps)
        ]
        return [summary, *records]

    def _model_lesson(self, steps: Sequence[StepSeen], outcome: str, tag: str) -> NewMemory | None:
        assert self.lesson_model is not None
        lines = "\n".join(
            f"({json.dumps(s.state)}, {self.action_names[s.action]}, "
            f"{'nothing changed' if s.next_state == s.state else 'moved on'})"
            for s in steps[-6:]
        )
        prompt = _LESSON_PROMPT.format(
            task=self.task, outcome=outcome.replace("_", " "), steps=lines
        )
        try:
            reply = run_sync(
                self.lesson_model.achat(prompt, temperature=0.0, max_tokens=self.lesson_tokens)
            )
        except BudgetExceeded:
            self.budget_spent = True  # the lessons were optional: the run goes on
            return None
        except ModelError:
            return None
        self.model_tokens += reply.usage.total_tokens
        text = " ".join((reply.text or "").split())
        if not text:
            return None
        self.model_lessons += 1
        last = steps[-1]
        meta = self.metadata | {
            "lesson": "model",
            "state": state_digest(last.state),
            "env": self.env,
            "outcome": outcome,
            "episode": tag,
            "tokens": reply.usage.total_tokens,
        }
        return NewMemory(text, meta, key=f"{self.env}|{tag}|model")

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {
            "episodes": self.episodes,
            "lessons_written": self.lessons_written,
            "model_tokens": self.model_tokens,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.episodes = int(state.get("episodes", self.episodes))
        self.lessons_written = int(state.get("lessons_written", self.lessons_written))
        self.model_tokens = int(state.get("model_tokens", self.model_tokens))
