"""A planner that asks a language model which discrete action to take.

The model reads the perceived features (the observation text) and answers in JSON
against a tiny schema: ``{"reason": "...", "action": <one of the action names>}``. The
action is an enum, so a grammar-constrained local model (the embedded 135M SmolLM2)
can only produce a valid choice. A model error never crashes a run by default: the
planner falls back to a random action and says so in the decision's reason.

This module imports no LLM machinery at import time (the registry's built-ins load it);
a model id is resolved with :func:`llmagentos.llm.make_model` only when a factory runs.
"""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from llmagentos._json import jsonable
from llmagentos.exceptions import ConfigError, ModelError, ModelOutputError
from llmagentos.modules.base import Component, only_components
from llmagentos.modules.planning import GoalManager, PlanningModule, TaskPlanner
from llmagentos.types import Decision, Features

if TYPE_CHECKING:
    from llmagentos.llm.base import Model
    from llmagentos.llm.types import ToolChoice
    from llmagentos.modules.tool_loop import ToolRunner

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "DEFAULT_TASK",
    "Example",
    "LLMPlanningModule",
    "Proposal",
    "action_names_of",
    "action_schema",
    "features_text",
    "llm_planning",
    "prompt_parts_of",
    "render_examples",
    "resolve_model",
]

DEFAULT_TASK = "an agent in an environment"
DEFAULT_SYSTEM_PROMPT = (
    "You control {task}. Read what it observes and choose its next action, one of: "
    '{actions}. Answer in JSON with "action" and a short "reason".'
)
"""The system prompt; ``{task}`` and ``{actions}`` are filled in (no other braces are read).

It names "action" before "reason" although the schema asks for the reason first: that
wording, measured with SmolLM2-135M on TextMaze, chose best of those tried.
"""

Fallback = Literal["random", "raise"] | int


def action_schema(action_names: Sequence[str], *, max_reason: int = 100) -> dict[str, Any]:
    """The JSON schema of a reply: a bounded reason, then an action from ``action_names``.

    Kept tiny on purpose: a small model under a JSON grammar runs it every step, and
    ``maxLength`` stops it from rambling. The reason comes first because a grammar
    generates properties in order: a model that has just written "the dock is east"
    then picks ``east`` (SmolLM2-135M on TextMaze: 13 of 16 cells right, against 9
    with the action first).
    """
    return {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "maxLength": max_reason},
            "action": {"type": "string", "enum": list(action_names)},
        },
        "required": ["reason", "action"],
        "additionalProperties": False,
    }


Example = tuple[str, str, str]
"""A worked example for the system prompt: (observation, reason, action name)."""


def render_examples(examples: Sequence[Example]) -> str:
    """Examples as prompt text: ``"<observation>" -> {"reason": ..., "action": ...}``."""
    return " ".join(
        f"{json.dumps(observation)} -> {json.dumps({'reason': reason, 'action': action})}"
        for observation, reason, action in examples
    )


@dataclass(frozen=True, slots=True)
class Proposal:
    """What the planner's model proposed for one state.

    Attributes:
        action: the action index.
        reason: the model's reason, or the error when ``source`` is ``"fallback"``.
        source: ``"model"`` (asked now), ``"cache"`` (asked before) or ``"fallback"``.
    """

    action: int
    reason: str
    source: Literal["model", "cache", "fallback"]

    @property
    def fallback(self) -> bool:
        return self.source == "fallback"


def _short(err: BaseException, limit: int = 120) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def features_text(features: Features) -> str:
    """The features as prompt text: strings as they are, anything else as JSON."""
    if isinstance(features, str):
        return features
    return json.dumps(jsonable(features), sort_keys=True)


class LLMPlanningModule(PlanningModule):
    """Chooses among discrete actions by asking a language model.

    Each decision sends one structured-output request: the system prompt names the task
    and the actions; the user message is the observation text, preceded by
    ``Goal: ...`` when the goal manager has a goal. The decision's action is the index
    of the named action, its reason ``"llm: <the model's reason>"``.

    Only :meth:`adecide` is implemented; the sync :meth:`decide` runs it through the
    base class (``run_sync``).

    Args:
        model: the model to ask.
        action_names: one name per action; the reply's ``action`` must be one of them.
        task: what the agent is, for the system prompt (``"a robot in a maze"``).
        system: a system prompt replacing :data:`DEFAULT_SYSTEM_PROMPT` (may use
            ``{task}`` and ``{actions}``).
        guidance: a sentence of advice appended to the system prompt.
        examples: worked examples appended after it, each ``(observation, reason,
            action name)``; small models need them.
        temperature: sampling temperature (0: the model's most likely answer).
        fallback: on a :class:`~llmagentos.exceptions.ModelError`: ``"random"`` (a
            random action, reason ``"fallback: <error>"``), an action index, or
            ``"raise"`` to re-raise.
        cache_size: remember this many proposals by prompt (0: ask every time). Only
            sound when the model answers deterministically (temperature 0).
        repairs: invalid replies sent back for correction before giving up.
        max_tokens: the reply's token budget.
        max_reason: the longest reason the schema admits, in characters.
        seed: seed of the fallback's random generator.
        goal_manager: keeps the goal shown to the model (default: none).
        task_planner: turns the goal into the task shown (default: the goal itself).
        tools: tools the model may call before it decides (a
            :class:`~llmagentos.tools.ToolRegistry`, or a
            :class:`~llmagentos.tools.gate.ToolGate` for permissions, approvals, budgets
            and an audit trail). Their results join the conversation; the decision's
            reason names the tools called. Decisions with tools are never cached.
        max_tool_rounds: model turns that may call tools, per decision.
        tool_choice: the first tool turn's ``tool_choice`` (``"auto"``, or
            ``"required"`` to make the model look before it decides).
    """

    def __init__(
        self,
        model: Model,
        action_names: Sequence[str],
        *,
        task: str = DEFAULT_TASK,
        system: str | None = None,
        guidance: str = "",
        examples: Sequence[Example] = (),
        temperature: float = 0.0,
        fallback: Fallback = "random",
        cache_size: int = 0,
        repairs: int = 2,
        max_tokens: int | None = 128,
        max_reason: int = 100,
        seed: int | None = None,
        goal_manager: GoalManager | None = None,
        task_planner: TaskPlanner | None = None,
        tools: ToolRunner | None = None,
        max_tool_rounds: int = 2,
        tool_choice: ToolChoice = "auto",
    ) -> None:
        super().__init__(goal_manager=goal_manager, task_planner=task_planner)
        if max_tool_rounds < 0:
            raise ConfigError("max_tool_rounds", f"must be >= 0 (got {max_tool_rounds})")
        self.tools = tools
        self.max_tool_rounds = max_tool_rounds
        self.tool_choice = tool_choice
        names = [str(name) for name in action_names]
        if not names or len(set(names)) != len(names):
            raise ConfigError("action_names", f"need distinct action names (got {names})")
        if not (
            fallback in ("random", "raise")
            or (type(fallback) is int and 0 <= fallback < len(names))
        ):
            raise ConfigError(
                "fallback", f"must be 'random', 'raise' or an action index (got {fallback!r})"
            )
        if cache_size < 0:
            raise ConfigError("cache_size", f"must be >= 0 (got {cache_size})")
        self.model = model
        self.action_names = tuple(names)
        self.task = task
        template = DEFAULT_SYSTEM_PROMPT if system is None else system
        system_text = template.replace("{task}", task).replace("{actions}", ", ".join(names))
        for _, _, action in examples:
            if action not in names:
                raise ConfigError("examples", f"example action {action!r} is not one of {names}")
        if guidance:
            system_text += " " + guidance
        if examples:
            system_text += " Examples: " + render_examples(examples)
        self.system = system_text
        self.schema = action_schema(names, max_reason=max_reason)
        self.temperature = temperature
        self.fallback = fallback
        self.cache_size = cache_size
        self.repairs = repairs
        self.max_tokens = max_tokens
        self.rng = random.Random(seed)
        self._cache: OrderedDict[str, Proposal] = OrderedDict()
        self.calls = 0
        """Decisions the model was asked for (repairs inside one request not counted)."""
        self.failures = 0
        """Requests that ended in a model error (and so in the fallback)."""
        self.cache_hits = 0

    def components(self) -> Iterable[Component]:
        return only_components(self.goal_manager, self.task_planner)

    def reset(self, *, seed: int | None = None) -> Any:
        if seed is not None:
            self.rng.seed(seed)
        return super().reset(seed=seed)

    # -- prompt ---------------------------------------------------------------------------

    def prompt(self, features: Features) -> str:
        """The user message for ``features``: the observation text, with the goal if any."""
        text = features_text(features)
        goal = self.goal_manager.goal(features)
        task = self.task_planner.task(goal, features)
        return text if task is None else f"Goal: {task}\n{text}"

    # -- proposals ------------------------------------------------------------------------

    def cached(self, features: Features) -> Proposal | None:
        """The cached proposal for ``features``, if any (no model call)."""
        if not self.cache_size:
            return None
        return self._lookup(self.prompt(features))

    def peek(self, features: Features) -> Proposal | None:
        """The cached proposal for ``features`` without counting a cache hit (for
        explanations: what the model said here before)."""
        if not self.cache_size:
            return None
        hit = self._cache.get(self.prompt(features))
        return None if hit is None else Proposal(hit.action, hit.reason, "cache")

    def _lookup(self, prompt: str) -> Proposal | None:
        hit = self._cache.get(prompt)
        if hit is None:
            return None
        self._cache.move_to_end(prompt)
        self.cache_hits += 1
        return Proposal(hit.action, hit.reason, "cache")

    def clear_cache(self) -> None:
        """Forget cached proposals (e.g. after changing the goal or the prompt)."""
        self._cache.clear()

    async def apropose(self, features: Features) -> Proposal:
        """Ask the model (or the cache) which action to take for ``features``.

        Raises:
            ModelError: the model failed and ``fallback`` is ``"raise"``.
        """
        prompt = self.prompt(features)
        if self.tools is not None and self.max_tool_rounds:
            return await self._propose_with_tools(prompt)
        if self.cache_size:
            hit = self._lookup(prompt)
            if hit is not None:
                return hit
        self.calls += 1
        try:
            reply = await self.model.agenerate(
                prompt, self.schema, system=self.system, repairs=self.repairs, **self._settings()
            )
            action = self._action_of(reply)
        except ModelError as err:
            return self._fallback(err)
        reason = " ".join(str(reply.get("reason", "")).split())
        proposal = Proposal(action, reason, "model")
        if self.cache_size:
            self._cache[prompt] = proposal
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return proposal

    def _settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"temperature": self.temperature}
        if self.max_tokens is not None:
            settings["max_tokens"] = self.max_tokens
        return settings

    async def _propose_with_tools(self, prompt: str) -> Proposal:
        from llmagentos.llm.types import Message
        from llmagentos.modules.tool_loop import consult_tools

        assert self.tools is not None
        self.calls += 1
        messages = [Message.user(prompt)]
        settings = self._settings()
        try:
            called = await consult_tools(
                self.model, messages, self.tools, system=self.system,
                rounds=self.max_tool_rounds, settings=settings, first_choice=self.tool_choice,
            )  # fmt: skip
            if called:
                messages.append(Message.user("Now choose the action."))
            reply = await self.model.agenerate(
                messages, self.schema, system=self.system, repairs=self.repairs, **settings
            )
            action = self._action_of(reply)
        except ModelError as err:
            return self._fallback(err)
        reason = " ".join(str(reply.get("reason", "")).split())
        if called:
            reason += f" (after {', '.join(called)})"
        return Proposal(action, reason, "model")

    def _fallback(self, err: ModelError) -> Proposal:
        self.failures += 1
        if self.fallback == "raise":
            raise err
        choice = (
            self.rng.randrange(len(self.action_names))
            if self.fallback == "random"
            else self.fallback
        )
        return Proposal(int(choice), _short(err), "fallback")

    def _action_of(self, reply: Any) -> int:
        # The schema already admits only the named actions; this guards models (or test
        # doubles) that hand back something unvalidated.
        name = reply.get("action") if isinstance(reply, dict) else None
        if name not in self.action_names:
            raise ModelOutputError(
                f"the reply's action {name!r} is not one of {', '.join(self.action_names)}",
                model=getattr(self.model, "model_id", ""),
            )
        return self.action_names.index(name)

    async def adecide(self, features: Features) -> Decision:
        proposal = await self.apropose(features)
        prefix = "fallback" if proposal.fallback else "llm"
        name = self.action_names[proposal.action]
        details = {
            "source": prefix,
            "action_names": list(self.action_names),
            "proposal": {
                "action": proposal.action, "name": name,
                "reason": proposal.reason, "from": proposal.source,
            },
        }  # fmt: skip
        return Decision(proposal.action, f"{prefix}: {proposal.reason}", None, details)


# -- registry factory -------------------------------------------------------------------------


def resolve_model(model: Model | str, *, agent: str = "agent") -> Model:
    """A model object as it is; an id string as ``agent``'s handle on the kernel.

    Every agent naming the same id shares one backend (one loaded model, one response
    cache) through the process-wide scheduler.
    """
    if isinstance(model, str):
        from llmagentos.kernel.default import agent_model

        return agent_model(model, agent=agent)
    if not callable(getattr(model, "agenerate", None)):
        raise ConfigError("model", f"expected a model id or a Model, got {type(model).__name__}")
    return model


def action_names_of(env: Any = None, n_actions: int | None = None) -> list[str]:
    """The environment's ``action_names`` if it has them, else ``action_0``, ``action_1``, ..."""
    inner = getattr(env, "unwrapped", env)
    names = getattr(inner, "action_names", None)
    if names:
        return [str(name) for name in names]
    if n_actions is None:
        raise ConfigError(
            "action_names", "the environment names no actions and has no Discrete size"
        )
    return [f"action_{i}" for i in range(n_actions)]


def prompt_parts_of(env: Any) -> dict[str, Any]:
    """What an environment says about itself for a planner's prompt, if anything.

    An environment may define ``task_description`` (who the agent is),
    ``planning_guidance`` (one sentence of advice) and ``planning_examples``
    (``(observation, reason, action)`` triples), as
    :class:`~llmagentos.envs.text_maze.TextMaze` does.
    """
    inner = getattr(env, "unwrapped", env)
    examples = getattr(inner, "planning_examples", None) or ()
    return {
        "task": str(getattr(inner, "task_description", None) or DEFAULT_TASK),
        "guidance": str(getattr(inner, "planning_guidance", None) or ""),
        "examples": [(str(o), str(r), str(a)) for o, r, a in examples],
    }


def llm_planning(
    *,
    model: Model | str = "local:smollm2",
    temperature: float = 0.0,
    fallback: Fallback = "random",
    cache_size: int = 0,
    task: str | None = None,
    action_names: list[str] | None = None,
    env: Any = None,
    n_actions: int | None = None,
    seed: int | None = None,
    agent: str = "agent",
) -> LLMPlanningModule:
    """A language model chooses each action from the observation text."""
    parts = prompt_parts_of(env)
    if task is not None:
        parts["task"] = task
    return LLMPlanningModule(
        resolve_model(model, agent=agent),
        action_names or action_names_of(env, n_actions),
        **parts,
        temperature=temperature,
        fallback=fallback,
        cache_size=cache_size,
        seed=seed,
    )
