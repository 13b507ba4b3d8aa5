"""The online rule: linear Thompson sampling over (user state, item) features.

The agent's value of showing item ``i`` to a user in state ``s`` is linear,
``Q(s, i) = w · φ(s, i)``: Q-learning with a discount of 0 (each slate's hits are its
whole return, a contextual bandit). ``w`` has a Gaussian posterior kept as
Bayesian linear regression (Agrawal and Goyal, 2013):

* prior ``w ~ N(w0, v² (λ I)^{-1})``, i.e. ``A = λ I`` and ``b = λ w0``;
* after a slate, for each shown item with feature row ``φ`` and reward ``r`` (1 if the
  user took it, else 0): ``A ← A + φ φᵀ`` and ``b ← b + r φ``;
* the posterior mean is ``μ = A⁻¹ b``; a planner samples ``w̃ ~ N(μ, v² A⁻¹)`` per slate
  and shows the ten items of highest ``w̃ · φ``, or uses ``μ`` when not exploring.

:class:`LinearPosterior` is that state, shared by the planner (reads) and the learner
(writes), as the Q-table is in the tabular agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llmagentos.exceptions import ConfigError
from llmagentos.modules.base import Component

__all__ = ["LinearPosterior"]


class LinearPosterior(Component):
    """A Gaussian posterior over linear weights ``w``, updated by Bayesian regression.

    Args:
        prior_mean: ``w0``, one weight per feature.
        prior_precision: ``λ`` (larger: the prior holds longer).
        noise: ``v``, the scale of the sampling (exploration) around the mean.
    """

    def __init__(
        self, prior_mean: Sequence[float], *, prior_precision: float = 1.0, noise: float = 0.1
    ) -> None:
        mean = np.asarray(prior_mean, dtype=np.float64)
        if mean.ndim != 1 or len(mean) == 0:
            raise ConfigError("prior_mean", f"must be a non-empty vector (got {prior_mean!r})")
        if not prior_precision > 0:
            raise ConfigError("prior_precision", f"must be > 0 (got {prior_precision})")
        if not noise >= 0:
            raise ConfigError("noise", f"must be >= 0 (got {noise})")
        self.prior_mean = mean
        self.prior_precision = float(prior_precision)
        self.noise = float(noise)
        self.precision = np.eye(len(mean)) * self.prior_precision
        self.weighted = self.precision @ mean
        self.updates = 0  # observations (shown items) learned from

    @property
    def dim(self) -> int:
        return len(self.prior_mean)

    def mean(self) -> np.ndarray:
        """The posterior mean ``μ = A⁻¹ b``."""
        return np.asarray(np.linalg.solve(self.precision, self.weighted))

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One draw ``w̃ ~ N(μ, v² A⁻¹)`` (the mean itself when ``noise`` is 0)."""
        mu = self.mean()
        if self.noise == 0.0:
            return mu
        # A⁻¹ = (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹, so μ + v L⁻ᵀ z has covariance v² A⁻¹.
        chol = np.linalg.cholesky(self.precision)
        z = rng.standard_normal(self.dim)
        return np.asarray(mu + self.noise * np.linalg.solve(chol.T, z))

    def update(self, features: np.ndarray, rewards: np.ndarray) -> None:
        """Learn from shown items: ``features`` is items x dim, ``rewards`` one per item."""
        phi = np.asarray(features, dtype=np.float64)
        r = np.asarray(rewards, dtype=np.float64)
        if phi.ndim != 2 or phi.shape[1] != self.dim or len(r) != phi.shape[0]:
            raise ConfigError(
                "features",
                f"need items x {self.dim} features and one reward per item "
                f"(got {phi.shape} and {r.shape})",
            )
        self.precision += phi.T @ phi
        self.weighted += phi.T @ r
        self.updates += phi.shape[0]

    def state_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision.tolist(),
            "weighted": self.weighted.tolist(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.precision = np.asarray(state["precision"], dtype=np.float64)
        self.weighted = np.asarray(state["weighted"], dtype=np.float64)
        self.updates = int(state.get("updates", 0))

    def __repr__(self) -> str:
        return (
            f"LinearPosterior(dim={self.dim}, prior_precision={self.prior_precision:g}, "
            f"noise={self.noise:g}, updates={self.updates})"
        )
