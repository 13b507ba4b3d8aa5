# ruff: noqa: E501  (payload and fixture source lines read best unbroken)
"""Resource bombs: each is stopped, reported, and killed within its limit + 1 s."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from llmagentos.exceptions import ConfigError, SandboxUnavailable
from llmagentos.sandbox import Sandbox, SandboxLimits
from tests.sandbox.processes import nobody_pids

BASE = SandboxLimits(
    cpu_seconds=1, wall_seconds=3, memory_mb=128, processes=16, open_files=32,
    file_size_mb=4, output_bytes=100_000, disk_mb=16,
)  # fmt: skip


@pytest.fixture(scope="module", params=["bwrap", "unshare"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    try:
        return Sandbox(BASE, backend=request.param)
    except SandboxUnavailable as err:
        pytest.skip(f"{request.param} backend unavailable here: {err}")


# name -> (code, the limit in seconds it must be stopped within, accepted killed_by).
# CPU limits count CPU seconds: on a loaded machine they take longer in wall time, and
# then the wall clock (3 s) stops the bomb instead, which is also accepted.
BOMBS: dict[str, tuple[str, float, set[str]]] = {
    "infinite_loop": ("while True: pass", 3.0, {"cpu_limit", "wall_timeout"}),
    "sigxcpu_ignored": (
        "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass",
        3.0,  # the hard RLIMIT_CPU (2 s of CPU) or the wall clock, whichever is first
        {"cpu_limit", "wall_timeout"},
    ),
    "sleep_forever": ("import time\ntime.sleep(1000)", 3.0, {"wall_timeout"}),
    "fork_bomb": (
        "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
        3.0,
        {"wall_timeout", "cpu_limit", "process_limit"},
    ),
    "thread_bomb": (
        "import threading, time\nwhile True: threading.Thread(target=time.sleep, args=(100,)).start()",
        3.0,
        {"process_limit", "memory_limit", "wall_timeout"},
    ),
    "allocate_1gb": ("b = bytearray(1 << 30)", 3.0, {"memory_limit"}),
    "grow_memory": ("x = []\nwhile True: x.append(' ' * 1_000_000)", 3.0, {"memory_limit"}),
    "huge_file": (
        "with open('big', 'wb') as f:\n    while True: f.write(b'x' * 1_000_000)",
        3.0,
        {"file_size_limit"},
    ),
    "fill_disk": (
        "i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'x' * 3_000_000); i += 1",
        3.0,
        {"disk_limit"},
    ),
    "open_files": ("fs = [open('/dev/null') for _ in range(10_000)]", 3.0, {"open_files_limit"}),
    "stdout_flood": ("while True: print('x' * 1000)", 3.0, {"output_limit", "cpu_limit"}),
    "stderr_flood": (
        "import sys\nwhile True: sys.stderr.write('y' * 1000)",
        3.0,
        {"output_limit", "cpu_limit"},
    ),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bomb_is_stopped_within_its_limit(sandbox: Sandbox, name: str) -> None:
    code, limit, reasons = BOMBS[name]
    result = sandbox.run_python(code)
    assert not result.ok
    assert result.killed_by in reasons, result.summary()
    assert result.seconds <= limit + 1.0, result.summary()
    if name.endswith("flood"):
        assert result.truncated
        assert len(result.stdout) + len(result.stderr) <= BASE.output_bytes + 10


def test_cpu_limit_alone_stops_a_loop(sandbox: Sandbox) -> None:
    result = sandbox.run_python("while True: pass", limits=replace(BASE, wall_seconds=30))
    assert result.killed_by == "cpu_limit"
    assert not result.timed_out
    # Killed by its RLIMIT_CPU (a signal) or by the sandbox's CPU watcher (None).
    assert result.exit_code is None or result.exit_code < 0


def test_no_process_survives_a_fork_bomb(sandbox: Sandbox) -> None:
    before = nobody_pids(os.getpid())
    result = sandbox.run_python(
        "import os, time\nfor _ in range(10):\n    if os.fork() == 0:\n        time.sleep(1000)\n"
        "time.sleep(1000)"
    )
    assert result.timed_out
    assert result.exit_code is None
    assert nobody_pids(os.getpid()) <= before


def test_partial_output_survives_a_timeout(sandbox: Sandbox) -> None:
    result = sandbox.run_python("import time\nprint('started')\ntime.sleep(100)")
    assert result.timed_out
    assert result.killed_by == "wall_timeout"
    assert result.stdout == "started\n"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cpu_seconds", 0),
        ("wall_seconds", -1.0),
        ("memory_mb", 1),
        ("processes", 0),
        ("open_files", 2.5),
        ("file_size_mb", True),
        ("output_bytes", 0),
        ("disk_mb", float("nan")),
    ],
)
def test_bad_limits_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        SandboxLimits(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field


def test_cpu_limit_rounds_up_with_a_hard_limit_one_second_later() -> None:
    assert SandboxLimits(cpu_seconds=1.5).cpu_rlimit == (2, 3)
