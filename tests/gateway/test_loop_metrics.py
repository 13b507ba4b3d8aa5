"""The gateway's lock-free series read exactly as prometheus_client's own would."""

from __future__ import annotations

import pytest

prometheus_client = pytest.importorskip("prometheus_client", reason="needs llmagentos[gateway]")

from llmagentos.gateway.loop_metrics import LoopCounter, LoopHistogram  # noqa: E402


def _exposed(registry: object) -> list[str]:
    text = prometheus_client.generate_latest(registry).decode()  # type: ignore[arg-type]
    return sorted(line for line in text.splitlines() if "_created" not in line)


def test_counts_and_times_are_exposed_as_prometheus_client_exposes_them() -> None:
    ours, theirs = prometheus_client.CollectorRegistry(), prometheus_client.CollectorRegistry()
    counter = LoopCounter("x_requests", "Requests", ["service", "status"])
    timer = LoopHistogram("x_seconds", "Time", ["service"])
    ours.register(counter)
    ours.register(timer)
    their_counter = prometheus_client.Counter(
        "x_requests", "Requests", ["service", "status"], registry=theirs
    )
    their_timer = prometheus_client.Histogram("x_seconds", "Time", ["service"], registry=theirs)
    # On a bound, between bounds, past the last one, and zero.
    for service, seconds in [("a", 0.005), ("a", 0.0051), ("b", 12.0), ("a", 0.0), ("b", 0.3)]:
        counter.cell(service, "200")[0] += 1
        their_counter.labels(service, "200").inc()
        timer.series(service).observe(seconds)
        their_timer.labels(service).observe(seconds)
    assert _exposed(ours) == _exposed(theirs)


def test_a_wrong_number_of_labels_is_refused() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        LoopCounter("y", "Y", ["a", "b"]).cell("only one")
    with pytest.raises(ValueError, match="takes labels"):
        LoopHistogram("z", "Z", ["a"]).series()
