"""The gateway's cost: added latency per request, and throughput against a bare app.

Two real processes on loopback, both uvicorn: the upstream (``llmagentos.gateway.
testing``, a bare Starlette app) and the gateway in front of it.

- latency: sequential ``POST /echo`` requests from one keep-alive client, directly and
  through the gateway, interleaved; p50 and p99 of each, and the gateway's added p50
  (target <= 1 ms);
- throughput: 32 concurrent clients for a fixed time, directly against the bare app
  and through the gateway (target >= 0.5x the bare app's requests/s). The load
  generator shares the machine's two cores with both servers, as the gateway would;
- the trust boundary: the same sequential requests through a second gateway with an
  API key (verified once, then remembered) and principal signing, against the open
  gateway (its added p50, target <= 0.5 ms);
- a bad-key flood: the time of 30 requests repeating one wrong secret for a real key
  id (one scrypt, then the failure memory) against 30 distinct wrong secrets for it (a
  scrypt each: the per-address and per-key limits opened wide for the measure);
  target <= 0.25x. (Made-up key ids cost no scrypt at all: no such row.)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path

import httpx

from _common import BenchResult, Check
from _http import Target, percentile, sequential_latencies
from _http import p50 as median
from llmagentos._processes import start_server
from llmagentos.gateway import ApiKeyStore

NAME = "gateway"
ROOT = Path(__file__).resolve().parent.parent
ADDED_MS_TARGET = 1.0
THROUGHPUT_TARGET = 0.5
TRUST_ADDED_MS_TARGET = 0.5
FLOOD_RATIO_TARGET = 0.25
FLOOD = 30


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


async def _throughput(url: str, seconds: float, clients: int = 32) -> tuple[float, int]:
    """Successful requests per second, and how many requests failed."""
    done = failed = 0
    stop = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done, failed
        while time.monotonic() < stop:
            try:
                reply = await client.post(url, content=b"x")
            except httpx.HTTPError:
                failed += 1
                continue
            if reply.status_code == 200:
                done += 1
            else:
                failed += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return done / (time.monotonic() - started), failed


def _cpu_seconds(pid: int) -> float | None:
    """A process's CPU time so far (user + system), where /proc tells it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(quick: bool) -> BenchResult:
    requests, seconds = (300, 2.0) if quick else (2000, 6.0)
    with tempfile.TemporaryDirectory() as tmp:
        upstream, upstream_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
        config = Path(tmp) / "gateway.toml"
        config.write_text(f'[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n')
        gateway, gateway_url = start_server(["llmagentos", "gateway", str(config)])
        store = ApiKeyStore(Path(tmp) / "keys.db")  # the shipped scrypt cost
        key = store.create_key("bench", ["up:*"])
        store.close()
        secured = Path(tmp) / "secured.toml"
        secured.write_text(
            '[gateway]\nkeys = "keys.db"\nauth_address_rate = 1000\nauth_address_burst = 1000\n'
            f"auth_key_rate = 1000\nauth_key_burst = 1000\n\n"
            f'[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n'
        )
        env = {**os.environ, "LLMAGENTOS_PRINCIPAL_SECRET": secrets.token_urlsafe(32)}
        guarded, guarded_url = start_server(["llmagentos", "gateway", str(secured)], env=env)
        try:
            direct, via = f"{upstream_url}/echo", f"{gateway_url}/up/echo"
            signed = Target(
                f"{guarded_url}/up/echo", content=b"x", headers={"authorization": f"Bearer {key}"}
            )
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
            bare_rps, bare_failed = asyncio.run(_throughput(direct, seconds))
            gateway_rps, gateway_failed = asyncio.run(_throughput(via, seconds))
            url = f"{guarded_url}/up/echo"
            remembered = _flood_seconds(url, [_wrong_secret(key)] * FLOOD)
            distinct = _flood_seconds(url, [_wrong_secret(key) for _ in range(FLOOD)])
        finally:
            for process in (gateway, guarded, upstream):
                process.terminate()
                process.wait(timeout=15)
    p50 = {"bare": median(bare), "gateway": median(mine), "signed": median(trusted)}
    p99 = {
        "bare": percentile(bare, 0.99),
        "gateway": percentile(mine, 0.99),
        "signed": percentile(trusted, 0.99),
    }
    added = p50["gateway"] - p50["bare"]
    trust_added = p50["signed"] - p50["gateway"]
    rows = [
        ["direct to the bare app", f"{p50['bare']:.3f}", f"{p99['bare']:.3f}", f"{bare_rps:,.0f}"],
        ["through the gateway", f"{p50['gateway']:.3f}", f"{p99['gateway']:.3f}",
         f"{gateway_rps:,.0f}"],
        ["added by the gateway", f"{added:.3f}", f"{p99['gateway'] - p99['bare']:.3f}", ""],
        ["through a gateway with a key, signing", f"{p50['signed']:.3f}", f"{p99['signed']:.3f}",
         ""],
        ["added by auth and signing", f"{trust_added:.3f}",
         f"{p99['signed'] - p99['gateway']:.3f}", ""],
        ["gateway CPU per request (us)", "-" if cpu_us is None else f"{cpu_us:.0f}", "", ""],
        [f"{FLOOD} requests, one wrong secret (s)", f"{remembered:.3f}", "", ""],
        [f"{FLOOD} requests, distinct wrong secrets (s)", f"{distinct:.3f}", "", ""],
    ]  # fmt: skip
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
            measured=f"gateway {gateway_rps:,.0f} req/s",
            baseline=f"bare Starlette {bare_rps:,.0f} req/s",
            ratio=gateway_rps / bare_rps,
            target=THROUGHPUT_TARGET,
            direction=">=",
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
        title=f"gateway: {requests} sequential requests each way; {seconds:g} s x 32 clients",
        columns=["path", "p50 ms", "p99 ms", "req/s (32 clients)"],
        rows=rows,
        checks=checks,
        params={"requests": requests, "seconds": seconds, "clients": 32},
        data={
            "p50_ms": p50,
            "p99_ms": p99,
            "rps": {"bare": bare_rps, "gateway": gateway_rps},
            "gateway_cpu_us_per_request": cpu_us,
            "flood_seconds": {"one_bad_key": remembered, "distinct_bad_keys": distinct},
            "failed": {"bare": bare_failed, "gateway": gateway_failed},
        },
        notes=[f"failed requests under load: bare {bare_failed}, gateway {gateway_failed}"],
    )
