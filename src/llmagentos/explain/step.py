"""One step, explained: what the agent saw, weighed, did and learned, and why.

Built from the step's trace line (its features, scores, the planner's
:attr:`~llmagentos.types.Decision.details` and the learner's report) and, when the run
kept spans (``[telemetry] exporter = "file"``), from the step's spans: its model calls
with tokens, latency and cache hits, the exact prompt and reply when content
recording was on, its tool calls and its memory retrievals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llmagentos.explain.folder import RunFolder, open_run

__all__ = ["ActionOption", "ModelCall", "StepExplanation", "explain_step", "step_spans"]

#: What the start of a reason says about its source, for planners that give no details.
_REASON_SOURCES = {
    "explore": "explore", "exploit": "q", "greedy": "q", "q": "q", "llm": "llm",
    "fallback": "fallback", "random": "random", "softmax": "softmax",
}  # fmt: skip


@dataclass(slots=True)
class ActionOption:
    """One action the planner could take, with what it knew of it."""

    index: int
    name: str
    q: float | None = None
    visits: int | None = None
    chosen: bool = False
    proposed: bool = False


@dataclass(slots=True)
class ModelCall:
    """A model call the step made (from its ``chat`` span)."""

    model: str
    milliseconds: float | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_hit: bool | None = None
    status: str = "unset"
    prompt: list[dict[str, Any]] | None = None
    reply: list[dict[str, Any]] | None = None
    asked_at: str | None = None
    """``"episode E step S"`` when the proposal came from an earlier step's call."""


@dataclass(slots=True)
class StepExplanation:
    """Everything known about one step; :meth:`to_dict` is what the dashboard shows."""

    run: str
    episode: int
    step: int
    training: bool
    observation: Any
    features: Any
    action: Any
    action_name: str | None
    reason: str | None
    source: str | None
    options: list[ActionOption] = field(default_factory=list)
    proposal: dict[str, Any] | None = None
    q_unsure: str | None = None
    overruled: str | None = None
    reward: float | None = None
    terminated: bool = False
    truncated: bool = False
    next_observation: Any = None
    learning: dict[str, Any] | None = None
    learned: str | None = None
    model_calls: list[ModelCall] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    retrievals: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] | None = None
    trace_id: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _source_of(reason: str | None) -> str | None:
    if not reason:
        return None
    return _REASON_SOURCES.get(reason.split(":", 1)[0].split(" ", 1)[0].strip().lower())


def _options(record: dict[str, Any], details: dict[str, Any]) -> list[ActionOption]:
    scores = details.get("q_values", record.get("scores"))
    names = details.get("action_names")
    visits = details.get("visits")
    count = max(len(x) for x in (scores or [], names or [], visits or []))
    if not count:
        return []
    proposal = details.get("proposal") or {}
    action = record.get("action")
    return [
        ActionOption(
            index=i,
            name=str(names[i]) if names and i < len(names) else str(i),
            q=float(scores[i]) if scores and i < len(scores) else None,
            visits=int(visits[i]) if visits and i < len(visits) else None,
            chosen=action == i,
            proposed=proposal.get("action") == i,
        )
        for i in range(count)
    ]


def _learned(report: dict[str, Any] | None, names: Sequence[str]) -> str | None:
    """The learner's report in a sentence (a TD update), or ``None`` if it is not one."""
    if not report or "q_new" not in report:
        return None
    action = report.get("action")
    name = names[action] if isinstance(action, int) and 0 <= action < len(names) else action
    parts = [f"Q(s, {name}) {report['q_old']:.3f} -> {report['q_new']:.3f}"]
    if "target" in report:
        parts.append(f"target {report['target']:.3f}")
    if "td_error" in report:
        parts.append(f"TD error {report['td_error']:+.3f}")
    if "alpha" in report:
        parts.append(f"alpha {report['alpha']:g}")
    return ", ".join(parts)


# -- spans ----------------------------------------------------------------------------------


def step_spans(
    spans: list[dict[str, Any]], episode: int, step: int, agent: str | None = None
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The ``step`` span of (episode, step) and every span below it, in start order."""
    by_id = {s["span_id"]: s for s in spans}
    candidates = [
        s for s in spans
        if s.get("name") == "step"
        and s.get("attributes", {}).get("llmagentos.episode") == episode
        and s.get("attributes", {}).get("llmagentos.step") == step
    ]  # fmt: skip
    if not candidates:
        return None, []

    def agent_of(item: dict[str, Any]) -> str | None:
        parent = by_id.get(item.get("parent_id") or "")
        return None if parent is None else parent.get("attributes", {}).get("gen_ai.agent.name")

    chosen = next((s for s in candidates if agent and agent_of(s) == agent), candidates[0])
    children: dict[str, list[dict[str, Any]]] = {}
    for item in spans:
        if item.get("trace_id") == chosen.get("trace_id") and item.get("parent_id"):
            children.setdefault(item["parent_id"], []).append(item)
    below: list[dict[str, Any]] = []
    stack = [chosen["span_id"]]
    while stack:
        for child in children.get(stack.pop(), []):
            below.append(child)
            stack.append(child["span_id"])
    below.sort(key=lambda s: s.get("start_ns") or 0)
    return chosen, below


def _loads(text: Any) -> list[dict[str, Any]] | None:
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _model_call(item: dict[str, Any]) -> ModelCall:
    attributes = item.get("attributes", {})
    start, end = item.get("start_ns"), item.get("end_ns")
    return ModelCall(
        model=str(attributes.get("gen_ai.request.model", item["name"].removeprefix("chat "))),
        milliseconds=(end - start) / 1e6 if start and end else None,
        input_tokens=attributes.get("gen_ai.usage.input_tokens"),
        output_tokens=attributes.get("gen_ai.usage.output_tokens"),
        cache_hit=attributes.get("llmagentos.cache.hit"),
        status=str(item.get("status", "unset")),
        prompt=_loads(attributes.get("gen_ai.input.messages")),
        reply=_loads(attributes.get("gen_ai.output.messages")),
    )


def _earlier_call(
    spans: list[dict[str, Any]], prompt_text: str
) -> tuple[dict[str, Any], str] | None:
    """The first recorded model call whose prompt holds ``prompt_text``, and its step."""
    needle = json.dumps(prompt_text, ensure_ascii=False)[1:-1]
    by_id = {s["span_id"]: s for s in spans}
    for item in sorted(spans, key=lambda s: s.get("start_ns") or 0):
        messages = item.get("attributes", {}).get("gen_ai.input.messages")
        if not item.get("name", "").startswith("chat ") or not isinstance(messages, str):
            continue
        if needle in messages:
            parent = by_id.get(item.get("parent_id") or "")
            while parent is not None and parent.get("name") != "step":
                parent = by_id.get(parent.get("parent_id") or "")
            where = "an earlier step"
            if parent is not None:
                attrs = parent.get("attributes", {})
                where = (
                    f"episode {attrs.get('llmagentos.episode')} step {attrs.get('llmagentos.step')}"
                )
            return item, where
    return None


def _add_spans(explanation: StepExplanation, run: RunFolder, record: dict[str, Any]) -> None:
    spans = run.spans()
    if not spans:
        explanation.notes.append(
            'no spans were kept: run with [telemetry] exporter = "file" to see model '
            "calls, tokens and tool calls here"
        )
        return
    top, below = step_spans(spans, explanation.episode, explanation.step, record.get("agent"))
    if top is None:
        explanation.notes.append("the spans hold no span for this step")
        return
    explanation.trace_id = top.get("trace_id")
    for item in below:
        name, attributes = item.get("name", ""), item.get("attributes", {})
        if name.startswith("chat "):
            explanation.model_calls.append(_model_call(item))
        elif name.startswith("execute_tool "):
            explanation.tool_calls.append({
                "tool": attributes.get("gen_ai.tool.name"),
                "ok": attributes.get("llmagentos.tool.ok"),
                "arguments": attributes.get("gen_ai.tool.call.arguments"),
                "result": attributes.get("gen_ai.tool.call.result"),
                "error": attributes.get("llmagentos.tool.error"),
            })  # fmt: skip
        elif name.startswith("retrieval "):
            explanation.retrievals.append({
                "namespace": attributes.get("gen_ai.data_source.id"),
                "query": attributes.get("gen_ai.retrieval.query.text"),
                "mode": attributes.get("llmagentos.memory.mode_used"),
                "hits": _loads(attributes.get("gen_ai.retrieval.documents")) or [],
            })  # fmt: skip
    proposal = explanation.proposal or {}
    if not explanation.model_calls and proposal.get("from") == "cache":
        found = _earlier_call(spans, _text(record.get("features")))
        if found is not None:
            call = _model_call(found[0])
            call.asked_at = found[1]
            explanation.model_calls.append(call)
    if explanation.model_calls and all(c.prompt is None for c in explanation.model_calls):
        explanation.notes.append(
            "prompts and replies were not recorded: set [telemetry] record_content = true"
        )


def _text(features: Any) -> str:
    return features if isinstance(features, str) else json.dumps(features)


# -- the explanation ------------------------------------------------------------------------


def explain_step(run: RunFolder | str, episode: int, step: int) -> StepExplanation:
    """Explain step ``step`` of episode ``episode`` of the run in a folder.

    Raises:
        RunLookupError: no such run folder, episode or step (the error names what is there).
    """
    folder = run if isinstance(run, RunFolder) else open_run(run)
    record = folder.step(episode, step)
    details = record.get("details") if isinstance(record.get("details"), dict) else {}
    assert isinstance(details, dict)
    names = [str(n) for n in details.get("action_names") or []]
    action = record.get("action")
    action_name = names[action] if isinstance(action, int) and 0 <= action < len(names) else None
    explanation = StepExplanation(
        run=str(folder.path),
        episode=episode,
        step=step,
        training=bool(record.get("training", True)),
        observation=record.get("observation"),
        features=record.get("features"),
        action=action,
        action_name=action_name,
        reason=record.get("reason"),
        source=details.get("source") or _source_of(record.get("reason")),
        options=_options(record, details),
        proposal=details.get("proposal"),
        q_unsure=details.get("q_unsure"),
        overruled=details.get("overruled"),
        reward=record.get("reward"),
        terminated=bool(record.get("terminated")),
        truncated=bool(record.get("truncated")),
        next_observation=record.get("next_observation"),
        learning=record.get("learning"),
        learned=_learned(record.get("learning"), names),
        timings=record.get("timings"),
    )
    _add_spans(explanation, folder, record)
    return explanation
