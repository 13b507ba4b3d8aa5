# ruff: noqa: E501  (payload source lines read best unbroken)
"""Limits per sandbox: concurrent sandboxes, shared-memory hoards, cleanup, refusal.

These run the real backends under the host's cgroups (as root on this machine: the v1
``memory``, ``pids`` and ``cpu``/``cpuacct`` hierarchies); a host without them skips.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from llmagentos.exceptions import ConfinementUnavailable, SandboxUnavailable
from llmagentos.sandbox import Sandbox, SandboxLimits, cgroups
from tests.sandbox.processes import nobody_pids

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
LIMITS = SandboxLimits(
    cpu_seconds=5, wall_seconds=20, memory_mb=256, processes=16, disk_mb=1024
)  # the tmpfs may hold 1 GiB: only the memory limit can stop a hoard there


def _make(backend: str, limits: SandboxLimits = LIMITS) -> Sandbox:
    try:
        return Sandbox(limits, backend=backend)
    except SandboxUnavailable as err:
        pytest.skip(f"{backend} with cgroups unavailable here: {err}")


@pytest.fixture(scope="module", params=["bwrap", "unshare"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    return _make(request.param)


def test_results_name_the_confinement(sandbox: Sandbox) -> None:
    result = sandbox.run_python("print('hi')")
    assert result.ok, result.summary()
    assert result.confinement in ("cgroup-v1", "cgroup-v2")
    assert result.confinement == sandbox.confinement
    assert result.fallbacks == ()
    assert sandbox.confinement in sandbox.describe()


HOLD = textwrap.dedent(
    """
    import os, time
    for _ in range(13):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
    print('holding', flush=True)
    time.sleep(60)
    """
)
FORK_TEN = textwrap.dedent(
    """
    import os, time
    made = 0
    for _ in range(10):
        try:
            pid = os.fork()
        except OSError as err:
            print('fork failed:', err)
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        made += 1
    print(made)
    """
)
FORK_MANY = FORK_TEN.replace("range(10)", "range(40)")


async def _wait_for(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_busy_sandbox_does_not_eat_another_ones_processes(sandbox: Sandbox) -> None:
    """Sandbox A holds 14 processes of the 16 allowed; B still forks its 10 (per uid,
    RLIMIT_NPROC would have let B fork only 2), and B's own limit still stops B."""
    before = nobody_pids(os.getpid())
    holder = asyncio.create_task(sandbox.arun_python(HOLD, limits=replace(LIMITS, wall_seconds=30)))
    try:
        held = await _wait_for(lambda: len(nobody_pids(os.getpid()) - before) >= 14, 15)
        assert held, "the holding sandbox never started its processes"
        other = await sandbox.arun_python(FORK_TEN)
        assert other.stdout == "10\n", other.summary()
        bomb = await sandbox.arun_python(FORK_MANY)
        made = int(bomb.stdout.split()[-1])
        assert made < LIMITS.processes, bomb.summary()
        assert "fork failed" in bomb.stdout
    finally:
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
    assert await _wait_for(lambda: not (nobody_pids(os.getpid()) - before), 5)


# Each hoard holds 480 MiB in pieces of 12 MiB (under RLIMIT_FSIZE, which caps one
# file, and under RLIMIT_AS, which does not see these pages at all).
_PIECES = "chunk = b'x' * (1 << 20)\n"
HOARDS = {
    "memfd": _PIECES
    + "import os\nfds = []\nfor i in range(40):\n    fd = os.memfd_create(f'hoard{i}')\n"
    "    fds.append(fd)\n    for _ in range(12):\n        os.write(fd, chunk)\nprint('held 480 MiB')\n",
    "tmpfs_workdir": _PIECES
    + "for i in range(40):\n    with open(f'/sandbox/hoard{i}', 'wb') as f:\n"
    "        for _ in range(12):\n            f.write(chunk)\nprint('held 480 MiB')\n",
    "tmpfs_tmp": _PIECES + "for i in range(40):\n    with open(f'/tmp/hoard{i}', 'wb') as f:\n"
    "        for _ in range(12):\n            f.write(chunk)\nprint('held 480 MiB')\n",
    "many_processes": (
        "import os, sys, time\nkids = []\nfor _ in range(6):\n    pid = os.fork()\n"
        "    if pid == 0:\n        b = bytearray(80 << 20)\n        time.sleep(2)\n        os._exit(0)\n"
        "    kids.append(pid)\n"
        "if all(os.waitpid(pid, 0)[1] == 0 for pid in kids):\n    print('held 480 MiB')\n"
        "else:\n    sys.exit('a child died')\n"
    ),
}


@pytest.mark.parametrize("name", sorted(HOARDS))
def test_a_memory_hoard_is_stopped_at_the_sandbox_limit(sandbox: Sandbox, name: str) -> None:
    result = sandbox.run_python(HOARDS[name])
    assert "held 480 MiB" not in result.stdout, result.summary()
    assert not result.ok
    assert result.killed_by == "memory_limit", result.summary()
    assert result.memory_peak_mb is not None
    assert result.memory_peak_mb <= LIMITS.memory_mb + 1


def test_dev_shm_is_unreachable_or_counted(sandbox: Sandbox) -> None:
    code = _PIECES + (
        "try:\n    open('/dev/shm/probe', 'wb').close()\nexcept OSError as err:\n"
        "    print('unreachable', err.errno)\n    raise SystemExit(0)\n"
        "for i in range(40):\n    with open(f'/dev/shm/hoard{i}', 'wb') as f:\n"
        "        for _ in range(12):\n            f.write(chunk)\nprint('held 480 MiB')\n"
    )
    result = sandbox.run_python(code)
    if result.ok:
        assert result.stdout.startswith("unreachable"), result.summary()
    else:
        assert result.killed_by == "memory_limit", result.summary()


def test_cpu_time_is_counted_over_all_processes(sandbox: Sandbox) -> None:
    """Four processes spinning: RLIMIT_CPU would allow 4 x 2 s; the sandbox allows 2 s."""
    code = (
        "import os\nfor _ in range(3):\n    if os.fork() == 0:\n        break\n"
        "while True:\n    pass\n"
    )
    limits = replace(LIMITS, cpu_seconds=2, wall_seconds=60, cpus=4.0)
    result = sandbox.run_python(code, limits=limits)
    assert result.killed_by == "cpu_limit", result.summary()
    assert result.cpu_seconds is not None
    assert result.cpu_seconds < 2 + 1.5, result.summary()


def test_the_cgroup_is_emptied_and_removed_after_a_timeout(sandbox: Sandbox) -> None:
    mine = f"{os.getpid()}-"  # other workers' sandboxes may come and go meanwhile
    before = {name for name in cgroups.run_dirs() if name.startswith(mine)}
    code = (
        "import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        os.setsid()\n"
        "        time.sleep(1000)\ntime.sleep(1000)\n"
    )
    result = sandbox.run_python(code, limits=replace(LIMITS, wall_seconds=1.5))
    assert result.killed_by == "wall_timeout"
    assert {name for name in cgroups.run_dirs() if name.startswith(mine)} <= before


CRASHING_PARENT = textwrap.dedent(
    """
    import sys
    from llmagentos.sandbox import Sandbox, SandboxLimits
    box = Sandbox(SandboxLimits(wall_seconds=120, cpu_seconds=60), backend=sys.argv[1])
    print("ready", flush=True)
    box.run_python("import os, time\\nos.fork()\\nos.fork()\\nprint('in', flush=True)\\ntime.sleep(1000)")
    """
)


def test_a_crashed_parent_leaves_no_process_and_its_cgroup_is_cleaned(sandbox: Sandbox) -> None:
    before_dirs = set(cgroups.run_dirs())
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    parent = subprocess.Popen(
        [sys.executable, "-c", CRASHING_PARENT, sandbox.backend],
        stdout=subprocess.PIPE,
        env=env,
    )
    before_pids = nobody_pids(parent.pid)  # none yet: only its runs count
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 20
        while len(nobody_pids(parent.pid) - before_pids) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(nobody_pids(parent.pid) - before_pids) >= 4, "the sandbox never started"
        leftover = {n for n in cgroups.run_dirs() if n.startswith(f"{parent.pid}-")} - before_dirs
        assert leftover, "the run had no cgroup"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while nobody_pids(parent.pid) - before_pids and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (nobody_pids(parent.pid) - before_pids), "sandboxed processes outlived their parent"
    cgroups.clean_stale()
    assert not (set(cgroups.run_dirs()) & leftover)


def test_an_unenforceable_setting_is_refused_unless_the_caller_opts_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cgroups, "detect", lambda: cgroups.Host(None, {}, "no cgroup here"))
    with pytest.raises(ConfinementUnavailable) as info:
        Sandbox(LIMITS, backend="unshare")
    text = str(info.value)
    for limit in ("memory_mb", "processes", "cpu_seconds"):
        assert limit in text
    assert "no cgroup here" in text
    assert "allow_weaker=True" in text
    weak = Sandbox(LIMITS, backend="unshare", allow_weaker=True)
    assert weak.confinement == "rlimit"
    result = weak.run_python("print(1)")
    assert result.ok, result.summary()
    assert result.confinement == "rlimit"
    assert set(result.fallbacks) >= {"memory_mb", "processes", "cpu_seconds"}
    explicit = Sandbox(LIMITS, backend="unshare", confinement="rlimit")
    assert explicit.confinement == "rlimit"


def test_a_cgroup_confinement_asked_for_and_missing_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cgroups, "detect", lambda: cgroups.Host(None, {}, "no cgroup here"))
    with pytest.raises(ConfinementUnavailable):
        Sandbox(LIMITS, backend="unshare", confinement="cgroup", allow_weaker=True)


def test_a_bad_confinement_name_is_a_config_error() -> None:
    from llmagentos.exceptions import ConfigError

    with pytest.raises(ConfigError) as info:
        Sandbox(LIMITS, confinement="jail")
    assert info.value.field == "confinement"
