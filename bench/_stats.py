"""Means over seeds with 95% Student-t intervals, for benchmarks that report findings."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided 95% Student-t quantiles t(0.975, df), for when scipy is absent.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
         16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042,
         40: 2.021, 60: 2.000, 120: 1.980}  # fmt: skip


def t_quantile(df: int) -> float:
    """t(0.975, df): from scipy if it is installed, else the table above.

    Between two tabulated df the smaller one's value is taken: the interval errs wide.
    """
    try:
        from scipy.stats import t
    except ImportError:
        return _T975[max(k for k in _T975 if k <= df)]
    return float(t.ppf(0.975, df))


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean over seeds with its 95% Student-t interval (half-width ``half``)."""

    mean: float
    half: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval:
        n = len(values)
        mean = math.fsum(values) / n
        half = t_quantile(n - 1) * statistics.stdev(values) / math.sqrt(n) if n > 1 else math.nan
        return cls(mean, half, n)

    def text(self, digits: int = 1) -> str:
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"

    def to_dict(self) -> dict[str, float]:
        return {
            "mean": self.mean,
            "ci95_low": self.mean - self.half,
            "ci95_high": self.mean + self.half,
            "half_width": self.half,
            "n": self.n,
        }
