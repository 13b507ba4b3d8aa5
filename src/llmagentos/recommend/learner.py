"""The learner: each slate's feedback updates the shared posterior (see bandit.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from llmagentos.exceptions import ModuleError
from llmagentos.modules.base import Component
from llmagentos.recommend.bandit import LinearPosterior
from llmagentos.types import Transition

__all__ = ["SlateFeedbackOptimizer"]


class SlateFeedbackOptimizer(Component):
    """Bayesian linear regression on the shown items: ``r = 1`` if taken, else ``0``.

    ``A ← A + Σ φ φᵀ`` and ``b ← b + Σ r φ`` over the slate's rows of ``φ`` (the
    features the planner chose from); the discount is 0 (one slate is one bandit round).
    """

    def __init__(self, posterior: LinearPosterior) -> None:
        self.posterior = posterior

    def update(self, transition: Transition) -> dict[str, Any] | None:
        slate = np.asarray(transition.action, dtype=np.int64)
        taken = np.asarray(transition.info.get("taken", ()), dtype=np.float64)
        if len(taken) != len(slate):
            raise ModuleError(
                "learning",
                f"feedback for {len(taken)} items, but the slate had {len(slate)}",
                value=transition.info,
            )
        self.posterior.update(transition.features["phi"][slate], taken)
        return {"shown": len(slate), "taken": int(taken.sum()), "updates": self.posterior.updates}
