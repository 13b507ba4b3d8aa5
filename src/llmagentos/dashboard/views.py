"""What each dashboard page shows, as plain data for its template.

Every function reads the runs folder afresh (a page shows the run as it is now) and
never raises for what it finds: a broken run is shown with its problems.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmagentos.dashboard import charts
from llmagentos.exceptions import LLMAgentOSError, RunLookupError
from llmagentos.explain import RunFolder, explain_step, find_runs, open_run
from llmagentos.explain.folder import JOURNAL

__all__ = ["episode_page", "overview", "resolve_run", "run_page", "step_page"]

_PHASES = ("train", "eval", "baseline train", "baseline eval")


def resolve_run(root: Path, run_id: str) -> RunFolder:
    """The run ``run_id`` (a path relative to ``root``); never a folder outside ``root``.

    Raises:
        RunLookupError: no such run under ``root``.
    """
    base = root.resolve()
    if not run_id or "\x00" in run_id:
        raise RunLookupError("run", "no run named")
    target = (base / run_id).resolve()
    if target != base and base not in target.parents:
        raise RunLookupError("run", f"{run_id!r} is not under the runs folder")
    return open_run(target)


def run_id(root: Path, run: RunFolder) -> str:
    relative = run.path.resolve().relative_to(root.resolve()).as_posix()
    return relative or "."


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _approvals(run: RunFolder) -> tuple[list[dict[str, Any]], str | None]:
    path = run.file(JOURNAL)
    if path is None:
        return [], None
    from llmagentos.durable.journal import Journal
    from llmagentos.durable.operator import call_text, visible

    try:
        with Journal(path, create=False) as journal:
            approvals = journal.approvals()
    except LLMAgentOSError as err:
        return [], f"{JOURNAL} cannot be read: {err}"
    return [
        {
            "key": a.key, "call": call_text(a.tool, a.arguments), "digest": a.digest,
            "status": a.status, "reason": visible(a.reason or ""),
            "requested": _when(a.requested), "decided_by": visible(a.decided_by or ""),
            "note": visible(a.note or ""),
        }
        for a in approvals
    ], None  # fmt: skip


def _phase_rows(run: RunFolder) -> list[dict[str, Any]]:
    rows = []
    for name in _PHASES:
        phase = run.phase(name)
        if phase is None:
            continue
        seconds = phase.get("seconds") or 0
        rows.append({
            "phase": name,
            "episodes": f"{phase.get('episodes', 0)} / {phase.get('planned_episodes', '?')}",
            "mean": phase.get("mean_return"), "min": phase.get("min_return"),
            "max": phase.get("max_return"), "success": phase.get("success_rate"),
            "steps": phase.get("steps"),
            "steps_per_second": (phase.get("steps") or 0) / seconds if seconds else None,
        })  # fmt: skip
    return rows


def overview(root: Path, memory: dict[str, Any] | None = None) -> dict[str, Any]:
    """The front page: every run under ``root`` with its state and headline numbers."""
    try:
        runs = find_runs(root)
    except RunLookupError as err:
        return {"root": str(root), "problem": str(err), "runs": [], "memory": memory}
    rows = []
    for run in runs:
        pending = sum(1 for a in _approvals(run)[0] if a["status"] == "pending")
        summary = (run.results or {}).get("summary") or {}
        train, evaluation = run.phase("train") or {}, run.phase("eval") or {}
        rows.append({
            "id": run_id(root, run), "name": run.name, "state": run.state,
            "env": (run.results or {}).get("env", "-"),
            "train": f"{train.get('episodes', 0)} / {train.get('planned_episodes', 0)}",
            "eval": f"{evaluation.get('episodes', 0)} / {evaluation.get('planned_episodes', 0)}",
            "eval_mean": summary.get("eval_mean_return"),
            "baseline_eval_mean": summary.get("baseline_eval_mean_return"),
            "pending": pending, "problems": run.problems,
            "started": (run.results or {}).get("started_at", "-"),
        })  # fmt: skip
    return {"root": str(root), "problem": None, "runs": rows, "memory": memory}


def run_page(root: Path, identifier: str) -> dict[str, Any]:
    """One run: config, state, curves against the baseline, tables, episodes, approvals."""
    run = resolve_run(root, identifier)
    results = run.results or {}
    train, base_train = run.phase("train") or {}, run.phase("baseline train") or {}
    evaluation, base_eval = run.phase("eval") or {}, run.phase("baseline eval") or {}
    config = run.config or {}
    approvals, journal_problem = _approvals(run)
    problems = list(run.problems) + ([journal_problem] if journal_problem else [])
    curve = charts.learning_curve(
        train.get("returns") or [], base_train.get("returns"),
        evaluation.get("mean_return"), base_eval.get("mean_return"),
        agent=run.name, baseline_name="baseline",
    )  # fmt: skip
    episodes = run.episodes()
    return {
        "id": identifier, "name": run.name, "state": run.state, "live": run.live,
        "env": results.get("env", "-"), "started": results.get("started_at", "-"),
        "error": results.get("error"), "stopped": results.get("stopped"),
        "notes": results.get("notes") or [], "problems": problems,
        "phases": _phase_rows(run), "curve": curve,
        "config": json.dumps(config, indent=2) if config else None,
        "agent": _describe(config.get("agent")), "baseline": _describe(config.get("baseline")),
        "episodes": episodes[-500:], "episodes_total": len(episodes),
        "approvals": approvals, "durable": run.file(JOURNAL) is not None,
        "kernel": run.kernel, "updated": _when((run.status or {}).get("updated")),
        "has_spans": run.file("spans.jsonl") is not None,
    }  # fmt: skip


def _describe(agent: Any) -> str | None:
    if not isinstance(agent, dict):
        return None
    parts = []
    for module in ("perception", "planning", "execution", "learning"):
        spec = agent.get(module)
        if isinstance(spec, dict) and spec.get("type"):
            parts.append(f"{module}: {spec['type']}")
    return ", ".join(parts) or None


def _episode_spans(run: RunFolder, episode: int) -> list[dict[str, Any]]:
    """The spans of the trace whose episode span is ``episode``."""
    spans = run.spans()
    roots = [
        s for s in spans
        if s.get("name", "").startswith("invoke_agent ")
        and s.get("attributes", {}).get("llmagentos.episode") == episode
    ]  # fmt: skip
    if not roots:
        return []
    trace = roots[0].get("trace_id")
    return [s for s in spans if s.get("trace_id") == trace]


def episode_page(root: Path, identifier: str, episode: int) -> dict[str, Any]:
    """One traced episode: its steps (each linking to its explanation), its waterfall."""
    run = resolve_run(root, identifier)
    steps = list(run.steps(episode))
    if not steps:
        run.step(episode, 0)  # raises with the episodes that are there
    rows = []
    total = 0.0
    for record in steps:
        details = record.get("details") if isinstance(record.get("details"), dict) else {}
        names = (details or {}).get("action_names") or []
        action = record.get("action")
        reward = record.get("reward") or 0
        total += reward if isinstance(reward, int | float) else 0
        rows.append({
            "step": record.get("step"),
            "action": names[action] if isinstance(action, int) and action < len(names) else action,
            "source": (details or {}).get("source") or "",
            "reason": record.get("reason") or "", "reward": reward, "total": total,
            "end": "terminated" if record.get("terminated")
            else "truncated" if record.get("truncated") else "",
        })  # fmt: skip
    return {
        "id": identifier, "name": run.name, "episode": episode, "live": run.live,
        "training": bool(steps[0].get("training", True)), "steps": rows, "return": total,
        "waterfall": charts.waterfall(_episode_spans(run, episode)),
        "has_spans": run.file("spans.jsonl") is not None,
    }  # fmt: skip


def step_page(root: Path, identifier: str, episode: int, step: int) -> dict[str, Any]:
    """One step, explained (the same explanation ``llmagentos explain`` prints)."""
    run = resolve_run(root, identifier)
    explanation = explain_step(run, episode, step)
    data = explanation.to_dict()
    from llmagentos.explain.step import step_spans

    top, below = step_spans(run.spans(), episode, step)
    data |= {
        "id": identifier, "name": run.name, "live": run.live,
        "waterfall": charts.waterfall(([top] if top else []) + below),
        "observation_text": _text(explanation.observation),
        "features_text": _text(explanation.features),
        "next_text": _text(explanation.next_observation),
        "learning_text": json.dumps(explanation.learning, indent=1) if explanation.learning
        else None,
    }  # fmt: skip
    return data


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
