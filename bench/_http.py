"""Sequential request latency on loopback, the targets interleaved.

One keep-alive client per target; each round sends one request to every target, in
an order that rotates each round, so the noise of a shared machine falls on all of
them alike. Used by the gateway benchmarks.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Target:
    """One way to send the same request."""

    url: str
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def p50(values: list[float]) -> float:
    return statistics.median(values)


def sequential_latencies(
    targets: Mapping[str, Target], requests: int, *, warmup: int = 50
) -> dict[str, list[float]]:
    """Milliseconds per request for each target; fails loudly on any non-200 reply."""
    names = list(targets)
    clients = {name: httpx.Client(timeout=30) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}

    def send(name: str) -> float:
        target = targets[name]
        start = time.perf_counter()
        reply = clients[name].post(
            target.url, json=target.json, content=target.content, headers=dict(target.headers)
        )
        elapsed = (time.perf_counter() - start) * 1000
        if reply.status_code != 200:
            raise RuntimeError(f"{name}: {reply.status_code} {reply.text[:200]}")
        return elapsed

    try:
        for _ in range(warmup):
            for name in names:
                send(name)
        for index in range(requests):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(send(name))
    finally:
        for client in clients.values():
            client.close()
    return times
