"""Overload: past its capacity a server sheds at once and keeps serving what it admits.

Real processes on loopback, load from ``wrk`` (closed loop: each connection sends its
next request as soon as it has an answer, the hardest case for a shedder, since a
shed request comes straight back). Capacity is the server's ``max_in_flight``
(``CAPACITY`` requests at once); "2x" and "10x" are that many connections:

- the gateway (``[gateway] max_in_flight = CAPACITY``, ``max_queue = CAPACITY``,
  ``queue_timeout = 0.02``) in front of the bare echo app, ``POST /up/echo``;
- a module service (``llmagentos serve`` Taxi-v4 with the same limits), ``GET
  /v1/sessions``.

At each load a probe (``PROBE_CLIENTS`` Python clients, each sequential, keep-alive)
measures the latency of the requests that were admitted, and the same probe beside 32
connections (within capacity) gives the unloaded p99 it is compared with. Several
clients, since under a flood a probe request refused takes a few hundred ms to come
back: one client got 30-70 admitted requests in 8 s, so its "p99" was the maximum.
Targets, at 2x and 10x: no 5xx but shed 503s, every shed reply with ``Retry-After``, no
socket error or timeout, and the admitted requests' p99 <= 5x the unloaded p99.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import httpx

from _common import BenchResult, Check
from _http import percentile
from _wrk import WrkResult, have_wrk, wrk
from llmagentos._processes import start_server, stop_processes

NAME = "gateway_overload"
ROOT = Path(__file__).resolve().parent.parent
CAPACITY = 64
LOADS = {"1x (32 connections)": 32, "2x": 2 * CAPACITY, "10x": 10 * CAPACITY}
P99_FACTOR = 5.0
PROBE_CLIENTS = 4


class Probe:
    """Sequential requests from ``PROBE_CLIENTS`` threads while wrk runs: admitted
    latencies (ms), sheds."""

    def __init__(self, url: str, method: str) -> None:
        self.url, self.method = url, method
        self.admitted: list[float] = []
        self._sheds: list[int] = []  # appended by each thread (a += would race)
        self.other: list[int] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(PROBE_CLIENTS)
        ]

    @property
    def shed(self) -> int:
        return len(self._sheds)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    reply = client.request(self.method, self.url, content=b"x")
                except httpx.HTTPError:
                    self.other.append(0)
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                if reply.status_code == 200:
                    self.admitted.append(elapsed)
                elif reply.status_code == 503 and "retry-after" in reply.headers:
                    self._sheds.append(1)
                else:
                    self.other.append(reply.status_code)

    def __enter__(self) -> Probe:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=20)


def _measure(url: str, method: str, connections: int, seconds: float) -> tuple[WrkResult, Probe]:
    with Probe(url, method) as probe:
        result = wrk(url, connections=connections, seconds=seconds, method=method)
    return result, probe


def _limits() -> str:
    return f"max_in_flight = {CAPACITY}\nmax_queue = {CAPACITY}\nqueue_timeout = 0.02\n"


def run(quick: bool) -> BenchResult:
    seconds = 3.0 if quick else 8.0
    if not have_wrk():
        raise RuntimeError("the overload benchmark drives load with wrk: apt-get install wrk")
    rows: list[list[str]] = []
    checks: list[Check] = []
    data: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        upstream, upstream_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
        config = Path(tmp) / "gateway.toml"
        config.write_text(
            f'[gateway]\n{_limits()}\n[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n'
        )
        gateway, gateway_url = start_server(
            ["llmagentos", "gateway", str(config), "--access-log", "off"]
        )
        service, service_url = start_server([
            "llmagentos", "serve", str(ROOT / "examples" / "configs" / "taxi.toml"),
            "--max-in-flight", str(CAPACITY), "--max-queue", str(CAPACITY),
            "--queue-timeout", "0.02",
        ])  # fmt: skip
        try:
            for server, url, method in (
                ("gateway", f"{gateway_url}/up/echo", "POST"),
                ("module service", f"{service_url}/v1/sessions", "GET"),
            ):
                wrk(url, connections=32, seconds=1, method=method)  # warm up
                measured = {
                    load: _measure(url, method, connections, seconds)
                    for load, connections in LOADS.items()
                }
                unloaded = percentile(measured["1x (32 connections)"][1].admitted, 0.99)
                for load, (result, probe) in measured.items():
                    rows.append(_row(server, load, result, probe, unloaded))
                    data[f"{server} {load}"] = _data(result, probe)
                    if load != "1x (32 connections)":
                        checks += _checks(server, load, result, probe, unloaded)
        finally:
            stop_processes(gateway, service, upstream)
    return BenchResult(
        name=NAME,
        title=(
            f"overload: capacity {CAPACITY} in flight; wrk closed loop, {seconds:g} s per "
            f"load; {PROBE_CLIENTS} sequential probe clients beside it"
        ),
        columns=[
            "server",
            "load",
            "req/s",
            "200/s",
            "shed 503",
            "other 5xx",
            "socket errors",
            "wrk p50 ms",
            "probe admitted",
            "probe p99 ms",
            "p99 / unloaded",
        ],
        rows=rows,
        checks=checks,
        params={
            "capacity": CAPACITY,
            "seconds": seconds,
            "loads": LOADS,
            "probe_clients": PROBE_CLIENTS,
        },
        data=data,
    )


def _shed(result: WrkResult) -> int:
    return result.statuses.get(503, 0)


def _row(server: str, load: str, result: WrkResult, probe: Probe, unloaded: float) -> list[str]:
    p99 = percentile(probe.admitted, 0.99) if probe.admitted else float("nan")
    return [
        server, load, f"{result.rps:,.0f}", f"{result.ok_rps:,.0f}", f"{_shed(result):,}",
        f"{result.count(500, 600) - _shed(result):,}", f"{result.socket_errors:,}",
        f"{result.p50_ms:.2f}", f"{len(probe.admitted):,}", f"{p99:.2f}",
        f"{p99 / unloaded:.2f}",
    ]  # fmt: skip


def _data(result: WrkResult, probe: Probe) -> dict[str, object]:
    return {
        "wrk": vars(result),
        "probe_admitted_ms": probe.admitted,
        "probe_shed": probe.shed,
        "probe_other": probe.other,
    }


def _checks(
    server: str, load: str, result: WrkResult, probe: Probe, unloaded: float
) -> list[Check]:
    key = f"{server.replace(' ', '_')}_{load}"
    errors = result.count(500, 600) - _shed(result) + result.socket_errors + len(probe.other)
    untold = _shed(result) - min(_shed(result), result.retry_after)
    p99 = percentile(probe.admitted, 0.99) if probe.admitted else float("inf")
    return [
        Check(
            name=f"{key}_errors",
            measured=f"{errors} 5xx other than shed 503s, socket errors and timeouts",
            baseline=f"{result.requests:,} requests, {_shed(result):,} shed",
            ratio=float(errors + untold),
            target=0.0,
            direction="<=",
            note=f"shed replies without Retry-After: {untold}",
        ),
        Check(
            name=f"{key}_admitted_p99",
            measured=f"admitted p99 {p99:.2f} ms ({len(probe.admitted)} probe requests)",
            baseline=f"unloaded p99 {unloaded:.2f} ms",
            ratio=p99 / unloaded,
            target=P99_FACTOR,
            direction="<=",
        ),
    ]
