"""One cgroup per sandboxed run: memory, processes and CPU counted per sandbox.

Rlimits count per process (``RLIMIT_AS``, ``RLIMIT_CPU``) or per uid across the whole
machine (``RLIMIT_NPROC``), and miss shared memory, memfd and tmpfs pages entirely. A
cgroup counts every page its processes cause to be allocated (anonymous memory, page
cache, tmpfs and shmem, memfd, kernel memory), every task, and all their CPU time.

:func:`detect` finds a usable hierarchy: cgroup v2 with the ``memory`` and ``pids``
controllers, else the v1 ``memory`` and ``pids`` hierarchies (plus ``cpuacct`` for CPU
time and ``cpu`` for a CPU quota). Run cgroups live under ``llmagentos-sandbox`` (or
``$LLMAGENTOS_SANDBOX_CGROUP``, a path inside each hierarchy) and are named
``<pid>-<start time>-<token>`` after the process that made them, so the leftovers of a
parent that died can be recognised, emptied and removed (:func:`clean_stale`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BASE_ENV",
    "Host",
    "RunCgroup",
    "clean_stale",
    "detect",
    "run_dirs",
]

BASE_ENV = "LLMAGENTOS_SANDBOX_CGROUP"
DEFAULT_BASE = "llmagentos-sandbox"
V1_CONTROLLERS = ("memory", "pids", "cpuacct", "cpu")
_NAME = re.compile(r"^(\d+)-(\d+)-[0-9a-f]{8}$")
_KILL_ROUNDS = 200  # x 5 ms: how long emptying a cgroup may take before we give up


@dataclass(frozen=True)
class Host:
    """The cgroup hierarchy this host offers sandboxes.

    Attributes:
        version: ``"v2"``, ``"v1"`` or ``None`` (no usable cgroups).
        bases: controller -> the base directory run cgroups are made in (v2: the same
            directory for every controller).
        problem: why cgroups, or some controllers, cannot be used ("" when all can).
    """

    version: str | None
    bases: dict[str, Path] = field(default_factory=dict)
    problem: str = ""

    @property
    def kind(self) -> str:
        return f"cgroup-{self.version}" if self.version else "rlimit"

    def has(self, controller: str) -> bool:
        return controller in self.bases


def _base_name() -> str:
    name = os.environ.get(BASE_ENV, DEFAULT_BASE).strip("/")
    if not name or ".." in Path(name).parts:
        return DEFAULT_BASE
    return name


def _mounts() -> tuple[Path | None, dict[str, Path]]:
    """The cgroup2 mount point and the v1 mount point of each controller."""
    v2: Path | None = None
    v1: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None, {}
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point = Path(fields[4].replace("\\040", " "))
        if tail[0] == "cgroup2" and v2 is None:
            v2 = point
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in V1_CONTROLLERS and option not in v1:
                    v1[option] = point
    return v2, v1


def _prepare(directory: Path) -> str:
    """Make ``directory``; "" or why it cannot be made."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot create {directory}: {err.strerror or err}"
    if not os.access(directory, os.W_OK):
        return f"cannot write to {directory}"
    return ""


def _enable_v2(root: Path, base: Path, wanted: list[str]) -> list[str]:
    """Enable ``wanted`` controllers from ``root`` down to ``base``; those enabled."""
    enabled = set(wanted)
    parts = base.relative_to(root).parts
    chain = [root, *(root.joinpath(*parts[: i + 1]) for i in range(len(parts)))]
    for directory in chain:
        control = directory / "cgroup.subtree_control"
        try:
            have = set(control.read_text().split())
        except OSError:
            return []
        for name in sorted(enabled - have):
            try:
                control.write_text(f"+{name}")
            except OSError:
                enabled.discard(name)
    return sorted(enabled)


def _detect_v2(mount: Path, name: str) -> Host | str:
    try:
        offered = set((mount / "cgroup.controllers").read_text().split())
    except OSError as err:
        return f"cgroup v2 at {mount} unreadable: {err.strerror or err}"
    if not {"memory", "pids"} <= offered:
        return f"cgroup v2 at {mount} offers {sorted(offered) or 'no'} controllers, not memory+pids"
    base = mount / name
    problem = _prepare(base)
    if problem:
        return f"cgroup v2: {problem}"
    enabled = _enable_v2(mount, base, sorted(offered & {"memory", "pids", "cpu"}))
    if not {"memory", "pids"} <= set(enabled):
        return f"cgroup v2: cannot enable memory+pids in {base}/cgroup.subtree_control"
    bases = dict.fromkeys(enabled, base)
    bases["cpuacct"] = base  # cpu.stat's usage_usec is in every v2 cgroup
    missing = "" if "cpu" in enabled else "cgroup v2: the cpu controller is not available"
    return Host("v2", bases, missing)


def _detect_v1(mounts: dict[str, Path], name: str) -> Host | str:
    missing = [c for c in ("memory", "pids") if c not in mounts]
    if missing:
        return f"cgroup v1: no {'/'.join(missing)} hierarchy mounted"
    bases: dict[str, Path] = {}
    problems = []
    for controller in V1_CONTROLLERS:
        if controller not in mounts:
            problems.append(f"no {controller} hierarchy mounted")
            continue
        base = mounts[controller] / name
        problem = _prepare(base)
        if problem:
            problems.append(problem)
        else:
            bases[controller] = base
    if not {"memory", "pids"} <= set(bases):
        return "cgroup v1: " + "; ".join(problems)
    return Host("v1", bases, ("cgroup v1: " + "; ".join(problems)) if problems else "")


def detect() -> Host:
    """The usable hierarchy (v2 first, then v1), or ``Host(None, problem=...)``."""
    v2, v1 = _mounts()
    name = _base_name()
    reasons = []
    if v2 is not None:
        found = _detect_v2(v2, name)
        if isinstance(found, Host):
            return found
        reasons.append(found)
    if v1:
        found = _detect_v1(v1, name)
        if isinstance(found, Host):
            return found
        reasons.append(found)
    if not reasons:
        reasons.append("no cgroup file system is mounted")
    if os.geteuid() != 0:
        reasons.append(f"not root (a delegated cgroup can be named with ${BASE_ENV})")
    return Host(None, {}, "; ".join(reasons))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _key(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat``: tells a live process from a reused pid."""
    text = _read(Path(f"/proc/{pid}/stat"))
    if not text:
        return None
    return text.rpartition(")")[2].split()[19]


def _pids(directory: Path) -> list[int]:
    return [int(p) for p in _read(directory / "cgroup.procs").split() if p.isdigit()]


class RunCgroup:
    """The cgroup of one run (a directory per v1 hierarchy, one directory in v2)."""

    def __init__(self, host: Host, name: str) -> None:
        self.host, self.name = host, name
        self.dirs = {c: base / name for c, base in host.bases.items()}
        # Each distinct directory once: v2 has one for everything.
        self.unique = list(dict.fromkeys(self.dirs.values()))

    @classmethod
    def create(
        cls,
        host: Host,
        *,
        memory_bytes: int,
        max_tasks: int,
        cpus: float | None,
    ) -> RunCgroup:
        """Make the cgroup with its limits set (nothing runs in it yet)."""
        clean_stale(host)
        me = os.getpid()
        name = f"{me}-{_start_time(me) or 0}-{secrets.token_hex(4)}"
        run = cls(host, name)
        try:
            for directory in run.unique:
                directory.mkdir()
            run._limit(memory_bytes, max_tasks, cpus)
        except BaseException:
            run.remove()
            raise
        return run

    def _limit(self, memory_bytes: int, max_tasks: int, cpus: float | None) -> None:
        memory, pids = self.dirs["memory"], self.dirs["pids"]
        if self.host.version == "v2":
            _write(memory / "memory.max", str(memory_bytes))
            if (memory / "memory.swap.max").exists():
                _write(memory / "memory.swap.max", "0")
            _write(memory / "memory.oom.group", "1")  # an OOM kill takes the whole run
            _write(pids / "pids.max", str(max_tasks))
            if cpus is not None and "cpu" in self.dirs:
                _write(self.dirs["cpu"] / "cpu.max", f"{round(cpus * 100_000)} 100000")
            return
        _write(memory / "memory.limit_in_bytes", str(memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():  # RAM + swap: no way out
            _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
        _write(pids / "pids.max", str(max_tasks))
        if cpus is not None and "cpu" in self.dirs:
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", "100000")
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(round(cpus * 100_000)))

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process must join before it execs the code."""
        return [str(directory / "cgroup.procs") for directory in self.unique]

    def cpu_seconds(self) -> float | None:
        """CPU time of every process the run has had, or ``None`` without accounting."""
        directory = self.dirs.get("cpuacct")
        if directory is None:
            return None
        if self.host.version == "v2":
            return _key(_read(directory / "cpu.stat"), "usage_usec") / 1e6
        text = _read(directory / "cpuacct.usage").strip()
        return int(text) / 1e9 if text.isdigit() else None

    def memory_peak_bytes(self) -> int | None:
        memory = self.dirs["memory"]
        name = "memory.peak" if self.host.version == "v2" else "memory.max_usage_in_bytes"
        text = _read(memory / name).strip()
        return int(text) if text.isdigit() else None

    def oom_kills(self) -> int:
        """Processes the kernel killed because the run reached its memory limit."""
        memory = self.dirs["memory"]
        if self.host.version == "v2":
            return _key(_read(memory / "memory.events"), "oom_kill")
        return _key(_read(memory / "memory.oom_control"), "oom_kill")

    def memory_refusals(self) -> int:
        """How often an allocation hit the limit (v1 ``failcnt``, v2 ``max`` events)."""
        memory = self.dirs["memory"]
        if self.host.version == "v2":
            return _key(_read(memory / "memory.events"), "max")
        text = _read(memory / "memory.failcnt").strip()
        return int(text) if text.isdigit() else 0

    def fork_refusals(self) -> int:
        """Forks refused because the run had ``pids.max`` tasks."""
        return _key(_read(self.dirs["pids"] / "pids.events"), "max")

    def pids(self) -> list[int]:
        return sorted({pid for d in self.unique for pid in _pids(d)})

    def kill(self) -> bool:
        """SIGKILL every process of the run; ``True`` once ``cgroup.procs`` is empty."""
        pids_dir = self.dirs["pids"]
        if self.host.version == "v2" and (pids_dir / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(pids_dir / "cgroup.kill", "1")
        else:
            with contextlib.suppress(OSError):
                _write(pids_dir / "pids.max", "0")  # no new process while we kill
        for _ in range(_KILL_ROUNDS):
            alive = self.pids()
            if not alive:
                return True
            for pid in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        return not self.pids()

    def remove(self) -> bool:
        """Remove the directories (after :meth:`kill`); ``True`` if all are gone."""
        gone = True
        for directory in self.unique:
            for _ in range(100):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)  # EBUSY: an exiting task not yet released
            else:
                gone = False
        return gone


def run_dirs(host: Host | None = None) -> list[str]:
    """Names of the run cgroups that exist now (in any of the host's hierarchies)."""
    host = host or detect()
    names: set[str] = set()
    for base in set(host.bases.values()):
        with contextlib.suppress(OSError):
            names.update(entry.name for entry in base.iterdir() if _NAME.match(entry.name))
    return sorted(names)


def clean_stale(host: Host | None = None) -> list[str]:
    """Empty and remove run cgroups whose maker is dead; the names removed."""
    host = host or detect()
    removed = []
    for name in run_dirs(host):
        match = _NAME.match(name)
        assert match is not None
        pid, started = int(match.group(1)), match.group(2)
        if _start_time(pid) == started:
            continue  # its maker is alive: its own runs, or runs of another live process
        run = RunCgroup(host, name)
        run.dirs = {c: d for c, d in run.dirs.items() if d.exists()}
        run.unique = [d for d in run.unique if d.exists()]
        if "pids" not in run.dirs:
            run.dirs["pids"] = run.unique[0] if run.unique else host.bases["pids"] / name
        if run.kill() and run.remove():
            removed.append(name)
    return removed
