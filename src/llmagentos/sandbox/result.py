"""What a sandboxed run hands back, and why it stopped."""

from __future__ import annotations

import signal
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SandboxResult", "classify"]

# The last line of a Python traceback that shows a limit was hit (the interpreter
# ignores SIGXFSZ, so a too-large file is an OSError rather than a signal).
_TRACEBACK_MARKERS: tuple[tuple[str, str], ...] = (
    ("MemoryError", "memory_limit"),
    ("[Errno 12] Cannot allocate memory", "memory_limit"),
    ("[Errno 27] File too large", "file_size_limit"),
    ("[Errno 24] Too many open files", "open_files_limit"),
    ("[Errno 11] Resource temporarily unavailable", "process_limit"),
    ("can't start new thread", "process_limit"),
    ("[Errno 28] No space left on device", "disk_limit"),
)


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one sandboxed run.

    Attributes:
        stdout: standard output, decoded as UTF-8 (bad bytes replaced).
        stderr: standard error, likewise.
        exit_code: the exit status; ``-N`` when killed by signal ``N``; ``None`` when
            the sandbox killed the run (wall timeout, output flood).
        timed_out: the wall-clock limit was reached.
        killed_by: why the code stopped early, when known: ``wall_timeout``,
            ``cpu_limit``, ``memory_limit``, ``file_size_limit``, ``open_files_limit``,
            ``process_limit``, ``disk_limit``, ``output_limit`` or ``signal SIGxxx``.
        seconds: wall-clock seconds from start to finish.
        backend: which backend ran the code (``bwrap`` or ``unshare``).
        truncated: stdout or stderr was cut at ``output_bytes``.
        confinement: what enforced the limits: ``cgroup-v2`` or ``cgroup-v1`` (one
            cgroup for the run), or ``rlimit`` (the per-process/per-uid fallback).
        fallbacks: the limits enforced only by their weaker rlimit (opted into with
            ``allow_weaker=True``; all of them under ``rlimit``).
        cpu_seconds: CPU time of all the run's processes (``None`` without a cgroup).
        memory_peak_mb: the run's peak memory, shared memory included (``None``
            without a cgroup).
    """

    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool
    killed_by: str | None
    seconds: float
    backend: str
    truncated: bool = False
    confinement: str = "rlimit"
    fallbacks: tuple[str, ...] = ()
    cpu_seconds: float | None = None
    memory_peak_mb: float | None = None

    @property
    def ok(self) -> bool:
        """The code exited with status 0 within its time limit."""
        return self.exit_code == 0 and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-able data, with ``ok``."""
        return {**asdict(self), "fallbacks": list(self.fallbacks), "ok": self.ok}

    def summary(self, max_chars: int = 2000) -> str:
        """A short text for a model: status line, then the tails of stderr and stdout."""
        status = "ok" if self.ok else f"exit {self.exit_code}"
        if self.killed_by:
            status += f", stopped by {self.killed_by}"
        parts = [
            f"[{status} in {self.seconds:.2f} s{', output truncated' if self.truncated else ''}]"
        ]
        budget = max(0, max_chars - len(parts[0]))
        for name, text in (("stderr", self.stderr), ("stdout", self.stdout)):
            if text.strip() and budget > 0:
                tail = text[-(budget // 2) :]
                parts.append(f"{name}:\n{tail}")
        return "\n".join(parts)[:max_chars]


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify(status: int, stderr: str, seconds: float, cpu_soft: int) -> tuple[int, str | None]:
    """``(exit_code, killed_by)`` from the sandbox's exit status.

    Both backends report a child killed by signal N as status ``128 + N`` (so a
    program that itself exits with 137 reads as killed by SIGKILL: documented).
    """
    if status < 0:  # the backend process itself died of a signal
        number = -status
    elif 128 < status <= 128 + 64:
        number = status - 128
    else:
        number = 0
    if number:
        if number == signal.SIGXCPU:
            return -number, "cpu_limit"
        if number == signal.SIGXFSZ:
            return -number, "file_size_limit"
        if number == signal.SIGKILL and seconds >= cpu_soft:
            # The hard CPU limit sends SIGKILL a second after an ignored SIGXCPU.
            return -number, "cpu_limit"
        return -number, f"signal {signal_name(number)}"
    if status != 0:
        last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "")
        for marker, reason in _TRACEBACK_MARKERS:
            if marker in last:
                return status, reason
    return status, None
