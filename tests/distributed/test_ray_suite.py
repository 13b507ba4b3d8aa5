"""The Ray suite (``ray_suite/check_*.py``), run inside a network namespace with only
loopback, so nothing Ray starts can reach or be reached beyond this machine.

Ray probes a public DNS server to find its own address even when told to use
127.0.0.1; in a namespace whose only interface is ``lo`` that probe fails at once and
Ray falls back to the hostname. Each of the suite's files runs in a pytest process of
its own there (its own cluster, started once per file: Ray takes seconds to start), so
the suite's workers can run two files at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="needs llmagentos[ray]")

SUITE = Path(__file__).parent / "ray_suite"
ROOT = Path(__file__).resolve().parents[2]


def _namespace_prefix() -> list[str]:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) for a loopback-only namespace")
    probe = subprocess.run(
        ["unshare", "-rn", "true"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.strip()}")
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


CHECKS = sorted(path.name for path in SUITE.glob("check_*.py"))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("check", CHECKS)
def test_the_ray_suite_passes_in_a_loopback_only_namespace(check: str, tmp_path: Path) -> None:
    command = [
        *_namespace_prefix(),
        sys.executable, "-m", "pytest", str(SUITE / check), "-q", "-p", "no:cacheprovider",
        "-o", "python_files=check_*.py", "--basetemp", str(tmp_path / "inner"),
    ]  # fmt: skip
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=540, env=env, check=False
    )
    report = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout and "failed" not in done.stdout, report
