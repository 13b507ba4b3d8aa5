"""An LLM planner that recalls lessons: in its prompt, and as rules where a model can't be trusted.

:class:`MemoryPlanningModule` reads :class:`~llmagentos.modules.memory_perception.Recalled`
features (what :class:`~llmagentos.modules.memory_perception.MemoryPerception` found
in memory for this state) and uses the lessons about this very state in two ways:

1. **the prompt** (the language model's part): the lessons are appended to the user
   message, after the observation ("Lessons from earlier trials here: moving south hit a
   wall."). A model may heed them or not; a 135M model mostly does not.
2. **the rules** (deterministic, ``rules=True``), in this order:

   * *follow*: a ``success`` lesson for this state (the fewest steps to the goal, its
     action not ``blocked``) is followed without asking the model;
   * *veto*: an action a ``blocked`` lesson names is never taken; of the others, only
     those blamed by the fewest ``loop``/``time_limit`` episodes are allowed (see
     :meth:`MemoryPlanningModule.allowed_actions`). When the model's answer is not
     allowed, the model is asked again with only the allowed actions in the reply's
     schema (a grammar-constrained model then cannot name the others).

With no lessons the prompt is exactly :class:`~llmagentos.modules.llm_planning.LLMPlanningModule`'s,
so the same planner with an empty memory is the memoryless control. Every decision's
reason names the lessons it used (``#<id> <action> <effect>``); :attr:`counts` says how
often each part decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmagentos.exceptions import ConfigError, ModelError, ModelOutputError
from llmagentos.modules.llm_planning import (
    LLMPlanningModule,
    Proposal,
    action_names_of,
    action_schema,
    prompt_parts_of,
    resolve_model,
)
from llmagentos.modules.memory_lessons import Lesson
from llmagentos.modules.memory_perception import Recalled
from llmagentos.types import Decision, Features

if TYPE_CHECKING:
    from llmagentos.llm.base import Model

__all__ = ["MemoryPlanningModule", "memory_planning"]

_HARD = frozenset({"blocked"})
_SOFT = frozenset({"loop", "time_limit"})
COUNTS = ("llm", "follow", "veto", "fallback", "against_lessons", "with_lessons")


def _labels(lessons: Sequence[Lesson]) -> str:
    return ", ".join(lesson.label for lesson in lessons)


class MemoryPlanningModule(LLMPlanningModule):
    """An :class:`LLMPlanningModule` that puts recalled lessons in its prompt and obeys rules.

    Args:
        model: the model to ask.
        action_names: one name per action.
        rules: apply the deterministic rules (follow, veto); off: lessons reach the
            prompt only.
        follow_success: with ``rules``, follow a ``success`` lesson without asking.
        prompt_lessons: at most this many lessons about this state in the prompt (0:
            none; the rules still apply).
        prompt_related: at most this many related memories (other states, summaries)
            in the prompt.
        **llm: the :class:`LLMPlanningModule` settings (``task``, ``guidance``,
            ``examples``, ``temperature``, ``fallback``, ``cache_size``, ``seed``, ...).
    """

    def __init__(
        self,
        model: Model,
        action_names: Sequence[str],
        *,
        rules: bool = True,
        follow_success: bool = True,
        prompt_lessons: int = 3,
        prompt_related: int = 0,
        **llm: Any,
    ) -> None:
        if "tools" in llm:
            raise ConfigError("tools", "the memory planner does not call tools")
        if prompt_lessons < 0 or prompt_related < 0:
            field = "prompt_lessons" if prompt_lessons < 0 else "prompt_related"
            raise ConfigError(field, "must be >= 0")
        super().__init__(model, action_names, **llm)
        self.rules = rules
        self.follow_success = follow_success
        self.prompt_lessons = prompt_lessons
        self.prompt_related = prompt_related
        self.max_reason = int(self.schema["properties"]["reason"]["maxLength"])
        self.counts = dict.fromkeys(COUNTS, 0)
        """Decisions by the model (``llm``), by a success lesson (``follow``), made after a
        veto (``veto``), by the fallback; ``with_lessons``: decisions with lessons about
        the state; ``against_lessons``: of those, the model's first answer was an action
        a lesson marks bad (whether or not a rule then vetoed it)."""

    # -- lessons --------------------------------------------------------------------------

    @staticmethod
    def lessons_here(features: Features) -> list[Lesson]:
        """The lessons ``features`` recalled about this very state, best first."""
        if not isinstance(features, Recalled):
            return []
        digest = features.state
        found = (Lesson.of(item) for item in features.here)
        return [lesson for lesson in found if lesson is not None and lesson.state == digest]

    def _shown(self, features: Features, here: Sequence[Lesson]) -> tuple[list[Lesson], list[str]]:
        """The lessons the prompt shows, and the related memories' texts."""
        shown = list(here[: self.prompt_lessons])
        related: list[str] = []
        if isinstance(features, Recalled) and self.prompt_related:
            related = [item.text for item in features.related[: self.prompt_related]]
        return shown, related

    def prompt(self, features: Features) -> str:
        """The base prompt of the state, then the lessons recalled for it (if any)."""
        inner = features.features if isinstance(features, Recalled) else features
        text = super().prompt(inner)
        shown, related = self._shown(features, self.lessons_here(features))
        if shown:
            text += "\nLessons from earlier trials here: " + "; ".join(s.what for s in shown) + "."
        if related:
            text += "\nRelated memories: " + " ".join(related)
        return text

    # -- asking ---------------------------------------------------------------------------

    async def _ask(self, prompt: str, allowed: Sequence[int] | None) -> Proposal:
        """Ask the model, its reply's actions limited to ``allowed`` (``None``: all)."""
        key = prompt if allowed is None else f"{list(allowed)}\n{prompt}"
        if self.cache_size:
            hit = self._lookup(key)
            if hit is not None:
                return hit
        names = self.action_names
        schema = (
            self.schema
            if allowed is None
            else action_schema([names[i] for i in allowed], max_reason=self.max_reason)
        )
        self.calls += 1
        try:
            reply = await self.model.agenerate(
                prompt, schema, system=self.system, repairs=self.repairs, **self._settings()
            )
            action = self._action_of(reply)
            if allowed is not None and action not in allowed:
                raise ModelOutputError(
                    f"the reply's action {names[action]!r} was ruled out",
                    model=getattr(self.model, "model_id", ""),
                )
        except ModelError as err:
            return self._fallback_among(err, allowed)
        proposal = Proposal(action, " ".join(str(reply.get("reason", "")).split()), "model")
        if self.cache_size:
            self._cache[key] = proposal
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return proposal

    def _fallback_among(self, err: ModelError, allowed: Sequence[int] | None) -> Proposal:
        proposal = self._fallback(err)  # raises when fallback is "raise"
        if allowed is None or proposal.action in allowed:
            return proposal
        return Proposal(allowed[self.rng.randrange(len(allowed))], proposal.reason, "fallback")

    async def apropose(self, features: Features) -> Proposal:
        return await self._ask(self.prompt(features), None)

    # -- deciding -------------------------------------------------------------------------

    def _follow(self, here: Sequence[Lesson]) -> Decision | None:
        blocked = {lesson.action_index for lesson in here if lesson.effect in _HARD}
        routes = [
            lesson
            for lesson in here
            if lesson.effect == "success"
            and lesson.action_index is not None
            and lesson.action_index not in blocked
            and lesson.action_index < len(self.action_names)
        ]
        if not routes:
            return None
        best = min(routes, key=lambda lesson: (lesson.steps_to_goal or 1 << 30, lesson.id))
        assert best.action_index is not None
        self.counts["follow"] += 1
        steps = f" in {best.steps_to_goal} steps" if best.steps_to_goal is not None else ""
        return Decision(
            best.action_index,
            f"memory: follow {best.label} ({best.action} reached the goal{steps}) "
            f"[lessons: {_labels(here)}]",
        )

    def allowed_actions(self, here: Sequence[Lesson]) -> tuple[list[int], set[int]]:
        """The actions the rules allow, given the lessons about this state, and the
        actions a lesson marks bad.

        Never an action a ``blocked`` lesson names (unless every action is blocked);
        of the rest, those the fewest ``loop``/``time_limit`` lessons' episodes blamed.
        A loop blamed in more trials is so avoided first, and when every way out has
        led round, the least-tried one is tried again: a systematic search, not a stall.
        """
        n = len(self.action_names)
        blocked = {
            lesson.action_index
            for lesson in here
            if lesson.effect in _HARD and lesson.action_index is not None
        }
        blame = [0] * n
        for lesson in here:
            index = lesson.action_index
            if lesson.effect in _SOFT and index is not None and 0 <= index < n:
                blame[index] += lesson.times
        open_ = [i for i in range(n) if i not in blocked] or list(range(n))
        least = min(blame[i] for i in open_)
        marked = blocked | {i for i in range(n) if blame[i]}
        return [i for i in open_ if blame[i] == least], marked

    async def adecide(self, features: Features) -> Decision:
        here = self.lessons_here(features)
        if here:
            self.counts["with_lessons"] += 1
        allowed, marked = self.allowed_actions(here)
        if self.rules and self.follow_success:
            followed = self._follow(here)
            if followed is not None:
                return followed
        prompt = self.prompt(features)
        first = await self._ask(prompt, None)
        shown, _ = self._shown(features, here)
        context = f" [lessons: {_labels(shown)}]" if shown else ""
        if first.action in marked:
            self.counts["against_lessons"] += 1
        if not self.rules or first.action in allowed:
            return self._decision(first, context)
        by = [lesson for lesson in here if lesson.action_index == first.action]
        second = await self._ask(prompt, allowed)
        self.counts["veto"] += 1
        said = f"{self.action_names[second.action]}, {second.reason}".rstrip(", ")
        source = "fallback" if second.fallback else "llm"
        return Decision(
            second.action,
            f"memory veto: not {self.action_names[first.action]} ({_labels(by)}); "
            f"{source}: {said}{context}",
        )

    def _decision(self, proposal: Proposal, context: str) -> Decision:
        if proposal.fallback:
            self.counts["fallback"] += 1
            return Decision(proposal.action, f"fallback: {proposal.reason}{context}")
        self.counts["llm"] += 1
        name = self.action_names[proposal.action]
        said = f"{name}, {proposal.reason}" if proposal.reason else name
        return Decision(proposal.action, f"llm: {said}{context}")


def memory_planning(
    *,
    model: Model | str = "local:smollm2",
    rules: bool = True,
    follow_success: bool = True,
    prompt_lessons: int = 3,
    temperature: float = 0.0,
    fallback: Any = "random",
    cache_size: int = 0,
    env: Any = None,
    n_actions: int | None = None,
    seed: int | None = None,
    agent: str = "agent",
) -> MemoryPlanningModule:
    """An LLM chooses each action with the lessons memory recalled; rules enforce them."""
    return MemoryPlanningModule(
        resolve_model(model, agent=agent),
        action_names_of(env, n_actions),
        rules=rules,
        follow_success=follow_success,
        prompt_lessons=prompt_lessons,
        temperature=temperature,
        fallback=fallback,
        cache_size=cache_size,
        seed=seed,
        **prompt_parts_of(env),
    )
