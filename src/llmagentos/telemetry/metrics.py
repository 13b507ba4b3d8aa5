"""Metrics: model latency and tokens, cache hits, queue waits, tool errors, episode returns.

Recorded only while telemetry is on, two ways at once: as OpenTelemetry instruments
(the GenAI conventions' ``gen_ai.client.operation.duration`` and
``gen_ai.client.token.usage``, and ``llmagentos.*`` for the rest), exported with the
spans' configuration; and as in-process totals that the services' Prometheus
``/metrics`` endpoints and the dashboard read (:meth:`Instruments.totals`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Instruments", "prometheus_families"]


class _Tally:
    """Count, sum and maximum of one quantity."""

    __slots__ = ("count", "max", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.max = max(self.max, value)

    def to_dict(self) -> dict[str, float]:
        mean = self.sum / self.count if self.count else 0.0
        return {"count": self.count, "sum": self.sum, "mean": mean, "max": self.max}


class Instruments:
    """The metric instruments of one telemetry configuration.

    Args:
        meter: an OpenTelemetry meter to record to as well (``None``: totals only).
    """

    def __init__(self, meter: Any = None) -> None:
        self._lock = threading.Lock()
        self._model: dict[tuple[str, str], _Tally] = {}
        self._tokens: dict[tuple[str, str], int] = {}
        self._cache = {"hit": 0, "miss": 0}
        self._model_errors: dict[str, int] = {}
        self._wait: dict[str, _Tally] = {}
        self._tools: dict[str, list[int]] = {}  # name -> [calls, errors]
        self._returns: dict[str, _Tally] = {}
        self._otel: dict[str, Any] = {}
        if meter is not None:
            self._otel = {
                "duration": meter.create_histogram(
                    "gen_ai.client.operation.duration", unit="s", description="model call time"
                ),
                "tokens": meter.create_histogram(
                    "gen_ai.client.token.usage", unit="{token}", description="tokens per call"
                ),
                "cache": meter.create_counter(
                    "llmagentos.model.cache", description="model calls answered by the cache"
                ),
                "wait": meter.create_histogram(
                    "llmagentos.scheduler.queue_wait", unit="s", description="time queued"
                ),
                "tools": meter.create_counter(
                    "llmagentos.tool.calls", description="tool calls, by tool and outcome"
                ),
                # A gauge: histograms take no negative values, and returns often are.
                "returns": meter.create_gauge(
                    "llmagentos.episode.return", description="the last episode's return"
                ),
            }

    def model_call(
        self,
        *,
        provider: str,
        model: str,
        seconds: float,
        input_tokens: int | None,
        output_tokens: int | None,
        cached: bool,
        error: str | None,
    ) -> None:
        key = (provider, model)
        with self._lock:
            self._model.setdefault(key, _Tally()).add(seconds)
            self._cache["hit" if cached else "miss"] += 1
            for kind, count in (("input", input_tokens), ("output", output_tokens)):
                if count:
                    self._tokens[(model, kind)] = self._tokens.get((model, kind), 0) + count
            if error is not None:
                self._model_errors[model] = self._model_errors.get(model, 0) + 1
        otel = self._otel
        if otel:
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
            }
            if error is not None:
                attributes["error.type"] = error
            otel["duration"].record(seconds, attributes)
            for kind, count in (("input", input_tokens), ("output", output_tokens)):
                if count:
                    otel["tokens"].record(count, {**attributes, "gen_ai.token.type": kind})
            otel["cache"].add(1, {"gen_ai.request.model": model, "llmagentos.cache.hit": cached})

    def queue_wait(self, backend: str, seconds: float) -> None:
        with self._lock:
            self._wait.setdefault(backend, _Tally()).add(seconds)
        if self._otel:
            self._otel["wait"].record(seconds, {"llmagentos.backend": backend})

    def tool_call(self, name: str, *, error: bool) -> None:
        with self._lock:
            tally = self._tools.setdefault(name, [0, 0])
            tally[0] += 1
            tally[1] += int(error)
        if self._otel:
            self._otel["tools"].add(1, {"gen_ai.tool.name": name, "llmagentos.tool.error": error})

    def episode(self, agent: str, total_return: float, *, training: bool) -> None:
        with self._lock:
            self._returns.setdefault(agent, _Tally()).add(total_return)
        if self._otel:
            self._otel["returns"].set(
                total_return, {"gen_ai.agent.name": agent, "llmagentos.training": training}
            )

    def totals(self) -> dict[str, Any]:
        """Everything recorded so far, as plain data."""
        with self._lock:
            calls = sum(t.count for t in self._model.values())
            return {
                "model_calls": {f"{p}/{m}": t.to_dict() for (p, m), t in self._model.items()},
                "model_errors": dict(self._model_errors),
                "tokens": {f"{m}/{kind}": n for (m, kind), n in self._tokens.items()},
                "cache": {
                    **self._cache,
                    "hit_rate": self._cache["hit"] / calls if calls else 0.0,
                },
                "queue_wait": {b: t.to_dict() for b, t in self._wait.items()},
                "tools": {n: {"calls": c, "errors": e} for n, (c, e) in self._tools.items()},
                "episode_returns": {a: t.to_dict() for a, t in self._returns.items()},
            }


def prometheus_families(instruments: Instruments) -> Iterator[Any]:
    """The totals as Prometheus metric families, for a ``prometheus_client`` collector."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    totals = instruments.totals()
    calls = CounterMetricFamily(
        "llmagentos_model_calls", "Model calls", labels=["provider", "model"]
    )
    seconds = CounterMetricFamily(
        "llmagentos_model_call_seconds", "Time in model calls", labels=["provider", "model"]
    )
    for key, tally in totals["model_calls"].items():
        provider, _, model = key.partition("/")
        calls.add_metric([provider, model], tally["count"])
        seconds.add_metric([provider, model], tally["sum"])
    tokens = CounterMetricFamily("llmagentos_model_tokens", "Tokens", labels=["model", "type"])
    for key, count in totals["tokens"].items():
        model, _, kind = key.rpartition("/")
        tokens.add_metric([model, kind], count)
    cache = CounterMetricFamily("llmagentos_model_cache", "Cache lookups", labels=["result"])
    cache.add_metric(["hit"], totals["cache"]["hit"])
    cache.add_metric(["miss"], totals["cache"]["miss"])
    wait = CounterMetricFamily(
        "llmagentos_queue_wait_seconds", "Time queued in the scheduler", labels=["backend"]
    )
    for backend, tally in totals["queue_wait"].items():
        wait.add_metric([backend], tally["sum"])
    tools = CounterMetricFamily("llmagentos_tool_calls", "Tool calls", labels=["tool", "outcome"])
    for name, counts in totals["tools"].items():
        tools.add_metric([name, "ok"], counts["calls"] - counts["errors"])
        tools.add_metric([name, "error"], counts["errors"])
    returns = GaugeMetricFamily(
        "llmagentos_episode_return_mean", "Mean episode return", labels=["agent"]
    )
    for agent, tally in totals["episode_returns"].items():
        returns.add_metric([agent], tally["mean"])
    yield from (calls, seconds, tokens, cache, wait, tools, returns)
