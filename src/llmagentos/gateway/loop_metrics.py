"""Counters and histograms kept by the event loop's thread alone: no lock per update.

prometheus_client's metrics take a lock on every update (a histogram's observation
takes two, after a Python loop over its buckets), which made the gateway's three
updates per request cost about a tenth of its own work. The gateway updates its
per-request series only from its event loop, so these keep plain numbers, and a
collector turns them into the same Prometheus families when /metrics is read.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["LoopCounter", "LoopHistogram", "TimeCells"]

#: prometheus_client's default buckets, in seconds (its ``Histogram.DEFAULT_BUCKETS``).
DEFAULT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    float("inf"),
)  # fmt: skip


def _go_float(bound: float) -> str:
    """A bucket's ``le`` as prometheus_client writes it: ``+Inf``, ``0.005``, ``1.0``."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class _Family:
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation = name, documentation
        self.labelnames = tuple(labelnames)

    def _check(self, labels: tuple[str, ...]) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels!r}")


class LoopCounter(_Family):
    """A labelled counter; ``cell(labels)`` is the one-item list to add to."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, documentation, labelnames)
        self._cells: dict[tuple[str, ...], list[float]] = {}

    def cell(self, *labels: str) -> list[float]:
        found = self._cells.get(labels)
        if found is None:
            self._check(labels)
            found = self._cells[labels] = [0.0]
        return found

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, cell in list(self._cells.items()):
            family.add_metric(list(labels), cell[0])
        yield family


class TimeCells:
    """One labelled series of a :class:`LoopHistogram`: its bucket counts and sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # The first bucket whose bound is >= value: Prometheus's ``le`` (the last is +Inf).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


class LoopHistogram(_Family):
    """A labelled histogram with Prometheus's default buckets."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str],
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:  # fmt: skip
        super().__init__(name, documentation, labelnames)
        bounds = tuple(sorted(float(b) for b in buckets))
        if not bounds or bounds[-1] != float("inf"):
            bounds = (*bounds, float("inf"))
        self.bounds = bounds
        self._series: dict[tuple[str, ...], TimeCells] = {}

    def series(self, *labels: str) -> TimeCells:
        found = self._series.get(labels)
        if found is None:
            self._check(labels)
            found = self._series[labels] = TimeCells(self.bounds)
        return found

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [_go_float(bound) for bound in self.bounds]
        for labels, cells in list(self._series.items()):
            running, buckets = 0, []
            for edge, count in zip(edges, list(cells.counts), strict=True):
                running += count
                buckets.append((edge, running))
            family.add_metric(list(labels), buckets, cells.total)
        yield family
