"""The gateway's cost: added latency per request, and throughput against a bare app.

Two real processes on loopback, both uvicorn: the upstream (``llmagentos.gateway.
testing``, a bare Starlette app) and the gateway in front of it.

- latency: sequential ``POST /echo`` requests from one keep-alive client, directly and
  through the gateway, interleaved; p50 and p99 of each, and the gateway's added p50
  (target <= 1 ms);
- throughput under load, driven by ``wrk`` (a compiled load generator: a Python client
  saturates near 450 requests/s, far below what the servers serve), 32 connections,
  one wrk thread, the targets interleaved: the bare app directly, the gateway as
  shipped (metrics on, its access log to a discarded stderr), and the gateway with
  everything on (an API key, a per-key rate limit set high enough never to refuse,
  principal signing, metrics, the access log to a file). Targets: the gateway >= 0.5x
  the bare app's requests/s, its added p99 <= 5 ms. wrk shares the machine's two cores
  with both servers;
- the trust boundary: the same sequential requests through a second gateway with an
  API key (verified once, then remembered) and principal signing, against the open
  gateway (its added p50, target <= 0.5 ms);
- worker processes: the same wrk load through ``llmagentos gateway --workers 2`` (its
  state shared through a throwaway ``redis-server``) against the one-worker gateway,
  interleaved with the rest; the ratio is printed for information, no target: on two
  cores shared with wrk and the upstream a second worker has little left to use. Its
  CPU per request over all its processes, against one worker's, shows what more cores
  would give: the same CPU a request means requests/s that grow with the cores;
- a bad-key flood: the time of 30 requests repeating one wrong secret for a real key
  id (one scrypt, then the failure memory) against 30 distinct wrong secrets for it (a
  scrypt each: the per-address and per-key limits opened wide for the measure);
  target <= 0.25x. (Made-up key ids cost no scrypt at all: no such row.)
- a faster server stack, where ``granian`` is installed (the ``bench`` extra): the
  minimal proxy on granian's Rust HTTP server through RSGI, on asyncio's
  loop and on uvloop, in the same interleaved load (information: what another server
  would give any Python proxy here);
- the minimal proxy with the gateway's own hop client (``Http1Upstream``) instead of
  aiohttp's (information: the floor of a proxy with the gateway's hop);
- the same gateway served on uvloop instead of asyncio's loop (``_gateway_on_uvloop``;
  information: what that loop, which the servers do not use for its tail under
  overload, would give);
- another hop client, where ``pyreqwest`` is installed (the ``bench`` extra): the
  minimal proxy sending its hop with Rust's reqwest instead of aiohttp (information:
  what the client costs of a proxy's requests).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from _common import BenchResult, Check
from _http import Target, percentile, sequential_latencies
from _http import p50 as median
from _redis import have_redis, redis_server
from _wrk import WrkResult, have_wrk, wrk
from llmagentos._processes import start_server
from llmagentos.gateway import ApiKeyStore

NAME = "gateway"
ROOT = Path(__file__).resolve().parent.parent
ADDED_MS_TARGET = 1.0
THROUGHPUT_TARGET = 0.5
ADDED_P99_MS_TARGET = 5.0
CONNECTIONS = 32
TRUST_ADDED_MS_TARGET = 0.5
FLOOD_RATIO_TARGET = 0.25
FLOOD = 30
WORKERS = 2
GRANIAN_LOOPS = ("asyncio", "uvloop")
REQWEST_LOOPS = ("asyncio", "uvloop")


def _start_floors(env: dict[str, str]) -> dict[str, tuple[subprocess.Popen[bytes], str]]:
    """The minimal proxies, each a server process: on uvicorn with aiohttp's client and
    with the gateway's hop, and where installed with pyreqwest's client and on granian
    (per event loop)."""
    floors = {
        "minimal": start_server(["_minimal_proxy"], port_flag=None, env=env),
        "minimal_http1": start_server(
            ["_minimal_proxy"], port_flag=None, env={**env, "CLIENT": "http1"}
        ),
    }
    for loop in REQWEST_LOOPS if importlib.util.find_spec("pyreqwest") else ():
        with_reqwest = {**env, "CLIENT": "pyreqwest", "LOOP": loop}
        floors[f"reqwest_{loop}"] = start_server(
            ["_minimal_proxy"], port_flag=None, env=with_reqwest
        )
    for loop in GRANIAN_LOOPS if importlib.util.find_spec("granian") else ():
        floors[f"granian_{loop}"] = start_server(
            ["_minimal_rsgi_proxy"], port_flag=None, env={**env, "LOOP": loop}
        )
    return floors


def _flood_seconds(url: str, keys: list[str]) -> float:
    """Seconds to send one request per key (each answered 401)."""
    with httpx.Client(timeout=30) as client:
        started = time.perf_counter()
        for key in keys:
            reply = client.post(url, content=b"x", headers={"authorization": f"Bearer {key}"})
            if reply.status_code != 401:
                raise RuntimeError(f"a bad key got {reply.status_code}: {reply.text[:200]}")
        return time.perf_counter() - started


def _wrong_secret(key: str) -> str:
    """``key``'s id with another secret: what a guesser sends."""
    return f"lak_{key.split('_')[1]}_{secrets.token_urlsafe(32)}"


def _children(pid: int) -> list[int]:
    """A process's children (granian serves from a worker process of its own)."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in listed]


def _cpu_seconds(pid: int) -> float | None:
    """A process's CPU time so far (user + system), where /proc tells it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(
    targets: dict[str, Target], seconds: float, repeats: int,
    serving: dict[str, list[int]], cpu: dict[str, list[float]],
) -> dict[str, list[WrkResult]]:  # fmt: skip
    """wrk against each target in turn, the order rotating each repeat; ``cpu`` gets,
    per target, the CPU microseconds per request of its ``serving`` processes."""
    names = list(targets)
    runs: dict[str, list[WrkResult]] = {name: [] for name in names}
    for name in names:  # warm each server's connections and caches first
        wrk(targets[name].url, connections=CONNECTIONS, seconds=1, headers=targets[name].headers)
    for index in range(repeats):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            target = targets[name]
            before = [_cpu_seconds(pid) for pid in serving.get(name, ())]
            result = wrk(
                target.url, connections=CONNECTIONS, seconds=seconds, headers=target.headers
            )
            after = [_cpu_seconds(pid) for pid in serving.get(name, ())]
            pairs = [(b, a) for b, a in zip(before, after, strict=True) if None not in (b, a)]
            if pairs and len(pairs) == len(before) and result.requests:
                used = sum(a - b for b, a in pairs if a is not None and b is not None)
                cpu.setdefault(name, []).append(used / result.requests * 1e6)
            if result.count(200, 300) != result.requests or result.socket_errors:
                raise RuntimeError(f"{name}: failures under load: {result}")
            runs[name].append(result)
    return runs


def _ratio(runs: dict[str, list[WrkResult]], name: str, base: str) -> float:
    """Median over repeats of the per-repeat requests/s ratio."""
    return statistics.median(a.rps / b.rps for a, b in zip(runs[name], runs[base], strict=True))


def _secured_config(folder: Path, upstream_url: str) -> tuple[Path, str]:
    """A gateway with an API key, a per-key limit that never refuses, and signing."""
    store = ApiKeyStore(folder / "keys.db")  # the shipped scrypt cost
    key = store.create_key("bench", ["up:*"])
    store.close()
    config = folder / "secured.toml"
    config.write_text(
        '[gateway]\nkeys = "keys.db"\nauth_address_rate = 1000\nauth_address_burst = 1000\n'
        "auth_key_rate = 1000\nauth_key_burst = 1000\n"
        "rate_per_second = 10000000\nburst = 10000000\n\n"
        f'[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n'
    )
    return config, key


def run(quick: bool) -> BenchResult:
    requests, seconds, repeats = (300, 2.0, 2) if quick else (2000, 5.0, 3)
    if not have_wrk():
        raise RuntimeError("the gateway benchmark drives load with wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        upstream, upstream_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
        config = folder / "gateway.toml"
        config.write_text(f'[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n')
        gateway, gateway_url = start_server(["llmagentos", "gateway", str(config)])
        floor_env = {**os.environ, "UPSTREAM": upstream_url, "PYTHONPATH": str(ROOT / "bench")}
        floors = _start_floors(floor_env)
        floors["gateway_uvloop"] = start_server(
            ["_gateway_on_uvloop", str(config)], port_flag=None, env=floor_env
        )
        secured, key = _secured_config(folder, upstream_url)
        env = {**os.environ, "LLMAGENTOS_PRINCIPAL_SECRET": secrets.token_urlsafe(32)}
        guarded, guarded_url = start_server(
            ["llmagentos", "gateway", str(secured), "--access-log", str(folder / "access.log")],
            env=env,
        )
        shared = contextlib.ExitStack()
        workers, workers_url = None, None
        if have_redis():  # without redis-server the --workers row says so
            redis_url = shared.enter_context(redis_server())
            config = folder / "workers.toml"
            config.write_text(
                f'[gateway]\nredis_url = "{redis_url}"\n\n'
                f'[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n'
            )
            workers, workers_url = start_server(
                ["llmagentos", "gateway", str(config), "--workers", str(WORKERS)]
            )
        try:
            direct, via = f"{upstream_url}/echo", f"{gateway_url}/up/echo"
            auth = {"authorization": f"Bearer {key}"}
            signed = Target(f"{guarded_url}/up/echo", content=b"x", headers=auth)
            # The gateway's own CPU per request: its process serves only the "gateway"
            # target of the interleaved run, so its CPU time over it is theirs alone.
            cpu_before = _cpu_seconds(gateway.pid)
            times = sequential_latencies(
                {"bare": Target(direct, content=b"x"), "gateway": Target(via, content=b"x"),
                 "signed": signed},
                requests,
            )  # fmt: skip
            cpu_after = _cpu_seconds(gateway.pid)
            bare, mine, trusted = times["bare"], times["gateway"], times["signed"]
            cpu_us = (
                None
                if cpu_before is None or cpu_after is None
                else (cpu_after - cpu_before) / len(mine) * 1e6
            )
            targets = {"bare": Target(direct), "gateway": Target(via), "full": signed}
            serving = {"bare": [upstream.pid], "gateway": [gateway.pid]}
            if workers is not None and workers_url is not None:
                targets["workers"] = Target(f"{workers_url}/up/echo")
                serving["workers"] = [workers.pid, *_children(workers.pid)]  # the workers
            for name, (process, url) in floors.items():
                targets[name] = Target(f"{url}/up/echo")
                serving[name] = [process.pid, *_children(process.pid)]  # granian's worker
            cpu: dict[str, list[float]] = {}
            loads = _load(targets, seconds, repeats, serving, cpu)
            url = f"{guarded_url}/up/echo"
            remembered = _flood_seconds(url, [_wrong_secret(key)] * FLOOD)
            distinct = _flood_seconds(url, [_wrong_secret(key) for _ in range(FLOOD)])
        finally:
            others = [process for process, _ in floors.values()]
            for process in (gateway, *others, guarded, workers, upstream):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)
            shared.close()
    return _result(
        requests, seconds, repeats,
        {"bare": bare, "gateway": mine, "signed": trusted}, loads, cpu_us, remembered, distinct,
        {name: statistics.median(values) for name, values in cpu.items()},
    )  # fmt: skip


def _median_of(runs: list[WrkResult], field: str) -> float:
    return statistics.median(float(getattr(run, field)) for run in runs)


def _result(  # noqa: PLR0917 - one benchmark's measurements, assembled once
    requests: int,
    seconds: float,
    repeats: int,
    times: dict[str, list[float]],
    loads: dict[str, list[WrkResult]],
    cpu_us: float | None,
    remembered: float,
    distinct: float,
    cpu_load: dict[str, float],
) -> BenchResult:
    p50 = {name: median(values) for name, values in times.items()}
    p99 = {name: percentile(values, 0.99) for name, values in times.items()}
    added = p50["gateway"] - p50["bare"]
    trust_added = p50["signed"] - p50["gateway"]
    rps = {name: _median_of(runs, "rps") for name, runs in loads.items()}
    load_p50 = {name: _median_of(runs, "p50_ms") for name, runs in loads.items()}
    load_p99 = {name: _median_of(runs, "p99_ms") for name, runs in loads.items()}
    ratio, full_ratio = _ratio(loads, "gateway", "bare"), _ratio(loads, "full", "bare")
    added_p99 = load_p99["gateway"] - load_p99["bare"]
    rows = [
        ["direct to the bare app", f"{p50['bare']:.3f}", f"{p99['bare']:.3f}",
         f"{rps['bare']:,.0f}", f"{load_p50['bare']:.2f}", f"{load_p99['bare']:.2f}"],
        ["through the gateway", f"{p50['gateway']:.3f}", f"{p99['gateway']:.3f}",
         f"{rps['gateway']:,.0f}", f"{load_p50['gateway']:.2f}", f"{load_p99['gateway']:.2f}"],
        ["added by the gateway", f"{added:.3f}", f"{p99['gateway'] - p99['bare']:.3f}",
         f"{ratio:.2f}x", "", f"{added_p99:.2f}"],
        ["through a gateway with a key, signing (load: + rate limit, access log file)",
         f"{p50['signed']:.3f}", f"{p99['signed']:.3f}", f"{rps['full']:,.0f}",
         f"{load_p50['full']:.2f}", f"{load_p99['full']:.2f}"],
        ["added by auth and signing", f"{trust_added:.3f}",
         f"{p99['signed'] - p99['gateway']:.3f}", f"{full_ratio:.2f}x", "", ""],
        ["gateway CPU per request (us)", "-" if cpu_us is None else f"{cpu_us:.0f}", "", "",
         "", ""],
        [f"{FLOOD} requests, one wrong secret (s)", f"{remembered:.3f}", "", "", "", ""],
        [f"{FLOOD} requests, distinct wrong secrets (s)", f"{distinct:.3f}", "", "", "", ""],
    ]  # fmt: skip
    workers = _workers_rows(loads, rps, load_p50, load_p99, cpu_load)
    rows[3:3] = workers  # after the plain gateway's rows
    floor_ratio = _ratio(loads, "minimal", "bare")
    rows[2:2] = [
        ["through a minimal proxy (raw ASGI + aiohttp's client, nothing else)", "", "",
         f"{rps['minimal']:,.0f}", f"{load_p50['minimal']:.2f}", f"{load_p99['minimal']:.2f}"],
        ["minimal proxy against the bare app", "", "", f"{floor_ratio:.2f}x", "", ""],
        ["the minimal proxy with the gateway's hop (Http1Upstream) as its client", "", "",
         f"{rps['minimal_http1']:,.0f}", f"{load_p50['minimal_http1']:.2f}",
         f"{load_p99['minimal_http1']:.2f}"],
        ["minimal proxy (gateway's hop) against the bare app", "", "",
         f"{_ratio(loads, 'minimal_http1', 'bare'):.2f}x", "", ""],
        *_stack_rows(loads, rps, load_p50, load_p99),
    ]  # fmt: skip
    if "gateway_uvloop" in loads:  # after the plain gateway's rows
        at = next(i for i, row in enumerate(rows) if row[0] == "added by the gateway") + 1
        rows[at:at] = [
            ["through the gateway served on uvloop (information)", "", "",
             f"{rps['gateway_uvloop']:,.0f}", f"{load_p50['gateway_uvloop']:.2f}",
             f"{load_p99['gateway_uvloop']:.2f}"],
            ["gateway on uvloop against the bare app", "", "",
             f"{_ratio(loads, 'gateway_uvloop', 'bare'):.2f}x", "", ""],
        ]  # fmt: skip
    rows.extend(_cpu_rows(cpu_load))
    checks = [
        Check(
            name="gateway_added_latency",
            measured=f"gateway p50 {p50['gateway']:.3f} ms",
            baseline=f"direct p50 {p50['bare']:.3f} ms",
            ratio=added / ADDED_MS_TARGET,
            target=1.0,
            direction="<=",
            note=f"added p50 {added:.3f} ms against the 1 ms target",
        ),
        Check(
            name="gateway_throughput",
            measured=f"gateway {rps['gateway']:,.0f} req/s (wrk, {CONNECTIONS} connections)",
            baseline=f"bare Starlette {rps['bare']:,.0f} req/s",
            ratio=ratio,
            target=THROUGHPUT_TARGET,
            direction=">=",
            note=(
                f"everything on: {rps['full']:,.0f} req/s, {full_ratio:.2f}x; a minimal "
                f"proxy on the same stack: {floor_ratio:.2f}x{_granian_note(loads)}"
            ),
        ),
        Check(
            name="gateway_added_p99_under_load",
            measured=f"gateway p99 {load_p99['gateway']:.2f} ms at {CONNECTIONS} connections",
            baseline=f"bare p99 {load_p99['bare']:.2f} ms",
            ratio=added_p99 / ADDED_P99_MS_TARGET,
            target=1.0,
            direction="<=",
            note=f"added p99 {added_p99:.2f} ms against the 5 ms target",
        ),
        Check(
            name="gateway_trust_added_latency",
            measured=f"with a key and signing p50 {p50['signed']:.3f} ms",
            baseline=f"open gateway p50 {p50['gateway']:.3f} ms",
            ratio=trust_added / TRUST_ADDED_MS_TARGET,
            target=1.0,
            direction="<=",
            note=f"added p50 {trust_added:.3f} ms against the 0.5 ms target",
        ),
        Check(
            name="gateway_bad_key_flood",
            measured=f"{FLOOD} x one wrong secret {remembered * 1000:.0f} ms",
            baseline=f"{FLOOD} distinct wrong secrets {distinct * 1000:.0f} ms",
            ratio=remembered / distinct,
            target=FLOOD_RATIO_TARGET,
            direction="<=",
            note="one scrypt, then the failure memory; against a scrypt per request",
        ),
    ]
    return BenchResult(
        name=NAME,
        title=(
            f"gateway: {requests} sequential requests each way; wrk {CONNECTIONS} connections, "
            f"{repeats} x {seconds:g} s each"
        ),
        columns=["path", "p50 ms", "p99 ms", "req/s (wrk)", "p50 ms (wrk)", "p99 ms (wrk)"],
        rows=rows,
        checks=checks,
        params={
            "requests": requests,
            "seconds": seconds,
            "repeats": repeats,
            "connections": CONNECTIONS,
        },
        data={
            "p50_ms": p50,
            "p99_ms": p99,
            "rps": rps,
            "load_p50_ms": load_p50,
            "load_p99_ms": load_p99,
            "wrk": {name: [vars(r) for r in runs] for name, runs in loads.items()},
            "gateway_cpu_us_per_request": cpu_us,
            "cpu_us_per_request_under_load": cpu_load,
            "minimal_proxy_ratio": floor_ratio,
            "minimal_proxy_http1_ratio": _ratio(loads, "minimal_http1", "bare"),
            "gateway_uvloop_ratio": (
                _ratio(loads, "gateway_uvloop", "bare") if "gateway_uvloop" in loads else None
            ),
            "flood_seconds": {"one_bad_key": remembered, "distinct_bad_keys": distinct},
            "workers": WORKERS,
            "workers_ratio": _ratio(loads, "workers", "gateway") if "workers" in loads else None,
        },
    )


def _cpu_rows(cpu: dict[str, float]) -> list[list[str]]:
    """CPU per request under load, and the throughput it allows a proxy at most.

    Each server here is one process, so one core at most (the GIL): the bare app's
    requests/s is about 1 / its CPU per request, and a proxy in front of it can pass on
    no more than 1 / its own, whatever else the other core does. So a one-process proxy
    serves at most app / proxy of the bare app's requests/s.
    """
    if "bare" not in cpu:
        return []
    app = cpu["bare"]
    rows = [["bare app CPU per request under load (us)", f"{app:.0f}", "", "", "", ""]]
    names = [("minimal", "minimal proxy"), ("minimal_http1", "minimal proxy, gateway's hop"),
             ("gateway", "gateway"), ("gateway_uvloop", "gateway on uvloop")]  # fmt: skip
    names[1:1] = [(f"reqwest_{lp}", f"minimal proxy, pyreqwest, {lp}") for lp in REQWEST_LOOPS]
    names[1:1] = [(f"granian_{lp}", f"minimal proxy on granian, {lp}") for lp in GRANIAN_LOOPS]
    for name, label in names:
        if name in cpu:
            proxy = cpu[name]
            rows.append([f"{label} CPU per request under load (us), and the ceiling it sets",
                         f"{proxy:.0f}", "", f"<= {app / proxy:.2f}x", "", ""])  # fmt: skip
    return rows


def _workers_rows(
    loads: dict[str, list[WrkResult]], rps: dict[str, float], p50: dict[str, float],
    p99: dict[str, float], cpu: dict[str, float],
) -> list[list[str]]:  # fmt: skip
    """The ``--workers 2`` rows: its load figures, its ratio to one worker, and its CPU
    per request over all its processes against one worker's: the same CPU a request
    means the requests/s grow with the cores there are to spend it."""
    label = f"through the gateway, --workers {WORKERS} (state shared in Redis)"
    if "workers" not in loads:
        return [[label, "", "", "- (no redis-server)", "", ""]]
    ratio = _ratio(loads, "workers", "gateway")
    rows = [
        [label, "", "", f"{rps['workers']:,.0f}", f"{p50['workers']:.2f}",
         f"{p99['workers']:.2f}"],
        [f"--workers {WORKERS} against one worker (information)", "", "", f"{ratio:.2f}x",
         "", ""],
    ]  # fmt: skip
    if "workers" in cpu and "gateway" in cpu:
        share = cpu["workers"] / cpu["gateway"]
        label = f"--workers {WORKERS} CPU per request, all its processes (us), against one's"
        rows.append([label, f"{cpu['workers']:.0f}", "", f"{share:.2f}x", "", ""])
    return rows


#: The other stacks the minimal proxy runs on: (target prefix, package, what it is, loops).
_FLOOR_STACKS = (
    ("reqwest", "pyreqwest", "with pyreqwest (Rust's reqwest) as its client", REQWEST_LOOPS),
    ("granian", "granian", "on granian (Rust HTTP server, RSGI)", GRANIAN_LOOPS),
)


def _stack_rows(
    loads: dict[str, list[WrkResult]], rps: dict[str, float], p50: dict[str, float],
    p99: dict[str, float],
) -> list[list[str]]:  # fmt: skip
    """The minimal proxy on each other stack and event loop, and its ratio to the bare app."""
    rows = []
    for prefix, package, what, loops in _FLOOR_STACKS:
        for loop in loops:
            name = f"{prefix}_{loop}"
            label = f"the minimal proxy {what}, {loop} loop"
            if name not in loads:
                rows.append([label, "", "", f"- ({package} not installed: the bench extra)",
                             "", ""])  # fmt: skip
                continue
            rows += [
                [label, "", "", f"{rps[name]:,.0f}", f"{p50[name]:.2f}", f"{p99[name]:.2f}"],
                [f"{package} ({loop}) minimal proxy against the bare app", "", "",
                 f"{_ratio(loads, name, 'bare'):.2f}x", "", ""],
            ]  # fmt: skip
    return rows


def _granian_note(loads: dict[str, list[WrkResult]]) -> str:
    found = [
        f"{_ratio(loads, f'{stack}_{loop}', 'bare'):.2f}x ({label}, {loop})"
        for stack, label, _, loops in _FLOOR_STACKS
        for loop in loops
        if f"{stack}_{loop}" in loads
    ]  # fmt: skip
    return f"; {', '.join(found)}" if found else ""
