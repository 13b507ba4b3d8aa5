"""Resource limits of one sandboxed run, validated when built."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from llmagentos.exceptions import ConfigError

__all__ = ["SandboxLimits"]

MiB = 1024 * 1024

# (minimum, maximum) per field: minimums the interpreter needs to start at all.
_BOUNDS: dict[str, tuple[float, float]] = {
    "cpu_seconds": (0.1, 3600.0),
    "wall_seconds": (0.1, 3600.0),
    "memory_mb": (32, 1024 * 1024),
    "processes": (1, 100_000),
    "open_files": (8, 1_000_000),
    "file_size_mb": (1, 1024 * 1024),
    "output_bytes": (1, 1 << 40),
    "disk_mb": (1, 1024 * 1024),
    "cpus": (0.01, 1024.0),
}
_INTEGERS = frozenset(
    {"memory_mb", "processes", "open_files", "file_size_mb", "output_bytes", "disk_mb"}
)


@dataclass(frozen=True)
class SandboxLimits:
    """What one run may use; exceeding a limit stops the code and is reported.

    Attributes:
        cpu_seconds: CPU time of the whole sandbox, every process counted (its cgroup,
            watched from outside); each process also has ``RLIMIT_CPU`` (rounded up to
            whole seconds: SIGXCPU at the limit, SIGKILL one second later).
        wall_seconds: wall-clock time of the whole run, enforced from outside.
        memory_mb: memory of the whole sandbox (its cgroup: every process, tmpfs and
            shared memory, memfd, page cache); each process's address space is also
            capped there (``RLIMIT_AS``), so one big allocation is a ``MemoryError``.
        processes: processes and threads of the sandbox (its cgroup's ``pids.max``,
            not counting the backend's own helpers).
        open_files: file descriptors per process (``RLIMIT_NOFILE``).
        file_size_mb: largest file a process may write (``RLIMIT_FSIZE``).
        output_bytes: stdout and stderr are each kept up to this many bytes.
        disk_mb: size of each of the in-memory ``/sandbox`` and ``/tmp`` file systems
            (their pages also count towards ``memory_mb``).
        cpus: CPU bandwidth of the sandbox in cores (its cgroup's CPU quota), or
            ``None`` for no quota.

    Under the documented ``rlimit`` fallback (see :class:`~llmagentos.sandbox.Sandbox`),
    ``cpu_seconds`` and ``memory_mb`` count per process, ``processes`` counts per uid
    (every sandbox on the host shares it) and ``cpus`` is not enforced.
    """

    cpu_seconds: float = 5.0
    wall_seconds: float = 10.0
    memory_mb: int = 256
    processes: int = 32
    open_files: int = 64
    file_size_mb: int = 16
    output_bytes: int = 1_000_000
    disk_mb: int = 64
    cpus: float | None = 1.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "cpus" and value is None:
                continue
            low, high = _BOUNDS[item.name]
            integer = item.name in _INTEGERS
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
                kind = "an integer" if integer else "a number"
                raise ConfigError(item.name, f"must be {kind}, got {value!r}")
            if not math.isfinite(value) or not low <= value <= high:
                raise ConfigError(item.name, f"must be between {low:g} and {high:g}, got {value!r}")

    @property
    def cpu_rlimit(self) -> tuple[int, int]:
        """``(soft, hard)`` RLIMIT_CPU: whole seconds, SIGKILL one second after SIGXCPU."""
        soft = max(1, math.ceil(self.cpu_seconds))
        return soft, soft + 1

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """The ``prlimit`` resources and their ``(soft, hard)`` values."""
        return {
            "cpu": self.cpu_rlimit,
            "as": (self.memory_mb * MiB,) * 2,
            "nproc": (self.processes,) * 2,
            "nofile": (self.open_files,) * 2,
            "fsize": (self.file_size_mb * MiB,) * 2,
            "core": (0, 0),
        }
