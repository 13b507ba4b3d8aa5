"""The dashboard's charts, as Plotly figures (JSON the page hands to plotly.js).

Plotting is Plotly's: these functions only choose what to draw. Each returns the
figure as a JSON string, or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

from typing import Any

from llmagentos.plotting import moving_average

__all__ = ["learning_curve", "waterfall"]

_LAYOUT: dict[str, Any] = {
    "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
    "height": 320,
    "template": "plotly_white",
    "legend": {"orientation": "h", "y": -0.2},
}
_COLOURS = {
    "chat": "#1f77b4", "queue": "#aec7e8", "tool": "#ff7f0e", "retrieval": "#2ca02c",
    "plan": "#9467bd", "learn": "#8c564b", "perceive": "#e377c2", "execute": "#bcbd22",
    "remote": "#17becf", "other": "#7f7f7f",
}  # fmt: skip


def learning_curve(
    train: list[float], baseline: list[float] | None, eval_mean: float | None,
    baseline_eval_mean: float | None, *, agent: str = "agent", baseline_name: str = "baseline",
) -> str | None:  # fmt: skip
    """Training return per episode with its rolling mean, against the baseline's."""
    if not train and not baseline:
        return None
    import plotly.graph_objects as go

    figure = go.Figure()
    window = max(1, min(50, len(train) // 10 or 1))
    runs = [(agent, train, "#1f77b4"), (baseline_name, baseline or [], "#d62728")]
    for name, returns, colour in runs:
        if not returns:
            continue
        x = list(range(len(returns)))
        figure.add_scatter(x=x, y=returns, mode="markers", name=f"{name} (episode)",
                           marker={"size": 4, "color": colour, "opacity": 0.35})  # fmt: skip
        figure.add_scatter(x=x, y=moving_average(returns, window), mode="lines",
                           name=f"{name} (mean of {window})", line={"color": colour})  # fmt: skip
    for name, mean, colour in ((agent, eval_mean, "#1f77b4"),
                               (baseline_name, baseline_eval_mean, "#d62728")):  # fmt: skip
        if mean is not None:
            figure.add_hline(y=mean, line_dash="dot", line_color=colour,
                             annotation_text=f"{name} eval mean {mean:.2f}")  # fmt: skip
    figure.update_layout(**_LAYOUT, xaxis_title="training episode", yaxis_title="return")
    return str(figure.to_json())


def _kind(name: str) -> str:
    head = name.split(" ", 1)[0]
    if head == "execute_tool":
        return "tool"
    if head in ("chat", "retrieval", "plan", "learn", "perceive", "execute"):
        return head
    if name == "queue wait":
        return "queue"
    if head in ("POST", "GET", "module", "remote"):
        return "remote"
    return "other"


def waterfall(spans: list[dict[str, Any]], *, limit: int = 1500) -> str | None:
    """A trace as a waterfall: one bar per span, nested by depth, in start order."""
    timed = [s for s in spans if s.get("start_ns") and s.get("end_ns")]
    if not timed:
        return None
    import plotly.graph_objects as go

    timed.sort(key=lambda s: s["start_ns"])
    timed = timed[:limit]
    ids = {s["span_id"]: s for s in timed}
    depth: dict[str, int] = {}
    for item in timed:
        parent = item.get("parent_id")
        depth[item["span_id"]] = depth.get(str(parent), -1) + 1 if parent in ids else 0
    origin = timed[0]["start_ns"]
    labels = [f"{i:>4} {'  ' * depth[s['span_id']]}{s['name']}" for i, s in enumerate(timed)]
    figure = go.Figure()
    by_kind: dict[str, list[int]] = {}
    for index, item in enumerate(timed):
        by_kind.setdefault(_kind(item["name"]), []).append(index)
    for kind, indices in by_kind.items():
        figure.add_bar(
            orientation="h",
            name=kind,
            y=[labels[i] for i in indices],
            x=[(timed[i]["end_ns"] - timed[i]["start_ns"]) / 1e6 for i in indices],
            base=[(timed[i]["start_ns"] - origin) / 1e6 for i in indices],
            marker_color=_COLOURS[kind],
            customdata=[[timed[i]["service"] or "", timed[i]["status"]] for i in indices],
            hovertemplate="%{y}<br>%{base:.2f} ms + %{x:.3f} ms<br>%{customdata[0]} "
            "%{customdata[1]}<extra></extra>",
        )
    layout = {**_LAYOUT, "height": min(4000, 120 + 16 * len(timed))}
    figure.update_layout(**layout, barmode="overlay", xaxis_title="milliseconds from the start")
    figure.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=labels,
                        tickfont={"family": "monospace", "size": 10})  # fmt: skip
    return str(figure.to_json())
