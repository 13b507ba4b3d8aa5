"""HTTP load with ``wrk``: a compiled load generator, so the servers are what is measured.

A Python client saturates near 450 requests/s on this machine, far below what the
servers serve; ``wrk`` (Debian's ``wrk`` package) drives tens of thousands. A small Lua
script counts replies by status in every wrk thread and prints one JSON line at the
end with wrk's own totals and latency percentiles (all replies: wrk does not split its
latency by status).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WrkResult", "have_wrk", "wrk"]

_SCRIPT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} retry_after = 0 end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if headers["retry-after"] ~= nil or headers["Retry-After"] ~= nil then
    retry_after = retry_after + 1
  end
end
function done(summary, latency, requests)
  local counts = {}
  local told = 0
  for _, thread in ipairs(threads) do
    told = told + thread:get("retry_after")
    for status, n in pairs(thread:get("statuses")) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do table.insert(parts, string.format('"%s":%d', status, n)) end
  local e = summary.errors
  io.write(string.format(
    '\nWRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"retry_after":%d,' ..
    '"statuses":{%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    told, table.concat(parts, ",")))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: requests/s, errors, latency percentiles (ms) and replies by status."""

    requests: int
    seconds: float
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int]
    retry_after: int = 0
    """Replies that carried ``Retry-After``."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def ok_rps(self) -> float:
        """2xx replies per second."""
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300) / self.seconds

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def count(self, low: int, high: int) -> int:
        """Replies with a status in ``[low, high)``."""
        return sum(n for s, n in self.statuses.items() if low <= s < high)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk(
    url: str,
    *,
    connections: int = 32,
    seconds: float = 5.0,
    threads: int = 1,
    method: str = "POST",
    body: str = "x",
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 2.0,
) -> WrkResult:
    """Drive ``url`` with wrk for ``seconds``; ``threads`` wrk threads (one leaves the
    other core to the servers on a 2-core machine)."""
    if not have_wrk():
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    lines = [_SCRIPT, f'wrk.method = "{method}"', f"wrk.body = {json.dumps(body)}"]
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "count.lua"
        script.write_text("\n".join(lines))
        command = [
            "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
            "--timeout", f"{timeout_s:g}s", "-s", str(script), url,
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    marker = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or marker is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]}{done.stderr}")
    data = json.loads(marker.removeprefix("WRK_JSON "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        connect_errors=data["connect"],
        read_errors=data["read"],
        write_errors=data["write"],
        timeouts=data["timeout"],
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        statuses={int(k): v for k, v in data["statuses"].items()},
        retry_after=data["retry_after"],
    )
