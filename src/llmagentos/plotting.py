"""Learning-curve plots (the optional ``llmagentos[plot]`` extra: matplotlib).

matplotlib is imported only when a plot is drawn, and through the object-oriented
API with an Agg canvas, so plotting never touches pyplot's global backend (a run
inside a notebook or GUI keeps its own).
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Mapping, Sequence

__all__ = ["PLOT_EXTRA_HINT", "matplotlib_available", "moving_average", "save_learning_curve"]

PLOT_EXTRA_HINT = "install llmagentos[plot] (matplotlib) to get learning_curve.png"


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    if window < 1:
        raise ValueError(f"window must be at least 1 (got {window})")
    out: list[float] = []
    total = 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        out.append(total / min(index + 1, window))
    return out


def default_window(n: int) -> int:
    """A smoothing window of about a tenth of the episodes, between 1 and 100."""
    return max(1, min(100, n // 10))


def save_learning_curve(
    path: str | os.PathLike[str],
    train_returns: Sequence[float],
    eval_returns: Sequence[float] = (),
    *,
    title: str = "",
    window: int | None = None,
    baseline: Mapping[str, Sequence[float]] | None = None,
    labels: tuple[str, str] = ("train", "baseline"),
) -> None:
    """Draw training return per episode, its moving average and the eval mean; save a PNG.

    With no training episodes the eval returns themselves are drawn.

    Raises:
        ModuleNotFoundError: matplotlib is not installed (see :data:`PLOT_EXTRA_HINT`).
        ValueError: there is nothing to plot.
    """
    if not train_returns and not eval_returns:
        raise ValueError("no episodes to plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    base_train = list((baseline or {}).get("train", ()))
    base_eval = list((baseline or {}).get("eval", ()))
    name = labels[0] if base_train or base_eval else "train"
    if train_returns:
        episodes = range(len(train_returns))
        smooth = window or default_window(len(train_returns))
        axes.plot(episodes, train_returns, color="tab:blue", alpha=0.25, lw=0.8, label=name)
        axes.plot(
            episodes,
            moving_average(train_returns, smooth),
            color="tab:blue",
            lw=1.8,
            label=f"{name}, mean of {smooth}",
        )
    if base_train:
        smooth = window or default_window(len(base_train))
        axes.plot(range(len(base_train)), base_train, color="tab:orange", alpha=0.2, lw=0.8)
        axes.plot(
            range(len(base_train)),
            moving_average(base_train, smooth),
            color="tab:orange",
            lw=1.8,
            label=f"{labels[1]}, mean of {smooth} (same seeds)",
        )
    if base_eval:
        mean = math.fsum(base_eval) / len(base_eval)
        axes.axhline(mean, color="tab:orange", ls=":", lw=1.5,
                     label=f"{labels[1]} eval mean {mean:.2f}")  # fmt: skip
    elif eval_returns:
        axes.plot(range(len(eval_returns)), eval_returns, color="tab:green", alpha=0.4, lw=0.8)
    if eval_returns:
        mean = math.fsum(eval_returns) / len(eval_returns)
        axes.axhline(
            mean,
            color="tab:green",
            ls="--",
            lw=1.5,
            label=f"eval mean {mean:.2f} ({len(eval_returns)} episodes)",
        )
    axes.set_xlabel("training episode" if train_returns else "eval episode")
    axes.set_ylabel("return")
    if title:
        axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(os.fspath(path), format="png")
