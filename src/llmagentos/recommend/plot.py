"""The report as a figure: the metrics side by side, and hits over a session's slates.

matplotlib (the ``plot`` extra) is imported here only, on an Agg canvas, as in
:mod:`llmagentos.plotting`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from llmagentos.recommend.metrics import METRICS

if TYPE_CHECKING:
    from llmagentos.recommend.evaluate import RecommendReport

__all__ = ["save_comparison"]

COLORS = ("tab:gray", "tab:orange", "tab:green", "tab:blue", "tab:purple", "tab:red")


def save_comparison(report: RecommendReport, path: str | os.PathLike[str]) -> Path:
    """Bars of HR/NDCG/Recall@10 per model (95% bootstrap interval over users) and the
    mean cumulative hits per session after each slate; saved as a PNG at ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    bars, curve = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    models = report.models
    width = 0.8 / len(models)
    for index, (model, color) in enumerate(zip(models, COLORS, strict=False)):
        xs = [m + (index - (len(models) - 1) / 2) * width for m in range(len(METRICS))]
        means = [model.users_ci[m].mean for m in METRICS]
        errors = [
            [model.users_ci[m].mean - model.users_ci[m].low for m in METRICS],
            [model.users_ci[m].high - model.users_ci[m].mean for m in METRICS],
        ]
        bars.bar(xs, means, width, yerr=errors, capsize=2, color=color, label=model.name)
        slates = range(1, len(model.hits_by_slate) + 1)
        curve.plot(slates, model.hits_by_slate, marker="o", color=color, label=model.name)
    bars.set_xticks(range(len(METRICS)), list(METRICS))
    bars.set_ylabel("first slate, mean over users (95% bootstrap)")
    users = report.split["eval_users"]
    bars.set_title(f"MovieLens, time-ordered split: {users} test users", fontsize=10)
    bars.grid(axis="y", alpha=0.3)
    bars.legend(fontsize=8)
    curve.set_xticks(range(1, report.settings.slates + 1))
    curve.set_xlabel("slates shown in the session")
    curve.set_ylabel("items taken (cumulative, mean per session)")
    seeds = report.settings.seeds
    curve.set_title(f"hits over a session (online: mean of {seeds} seeds)", fontsize=10)
    curve.grid(alpha=0.3)
    figure.tight_layout()
    target = Path(path)
    figure.savefig(os.fspath(target), format="png")
    return target
