"""The in-process harness of the gateway's cost (bench/_gateway_in_process.py) runs and
says what it measured: the gateway answered every request 200, or it stops."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent / "bench" / "_gateway_in_process.py"


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(HARNESS), "300", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_own_work_is_measured() -> None:
    out = _run()
    assert re.search(r"gateway's own work: [\d.]+ us per request .*access log on", out), out


def test_through_the_servers_protocol_gateway_and_bare_app_are_measured() -> None:
    out = _run("--protocol", "off")
    assert re.search(r"the gateway: [\d.]+ us per request .*access log off", out), out
    assert re.search(r"the bare app: [\d.]+ us per request", out), out
    ratio = float(re.search(r"bare app / gateway: ([\d.]+)x", out).group(1))  # type: ignore[union-attr]
    assert 0 < ratio < 5, out
