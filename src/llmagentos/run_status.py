"""``status.json``: a run's progress while it goes, for the dashboard and ``explain``.

``results.json`` is written once, at the end; a run that is still going (or that died
without writing it) is known by its status file: the finished episodes so far, the
state (``running`` until the end, then what the run ended as), the process that runs
it and the kernel's counters. It is replaced atomically at most once per ``every``
seconds (and at every phase's start and end), so a reader never sees half a file and
a fast run does not spend its time writing it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmagentos._files import write_atomic
from llmagentos.experiment_results import ExperimentResult, PhaseResult, RunCallbacks
from llmagentos.types import EpisodeResult

__all__ = ["STATUS_FILE", "STATUS_FORMAT", "RunProgress"]

STATUS_FILE = "status.json"
STATUS_FORMAT = "llmagentos.status"


def _kernel_state() -> dict[str, Any] | None:
    from llmagentos.kernel.default import kernel_state

    return kernel_state()


class RunProgress(RunCallbacks):
    """Run hooks that keep ``status.json`` current, then call the caller's hooks.

    Args:
        out: the run's output folder.
        result: the run's result, filled in as episodes finish.
        inner: the caller's hooks (progress bars), called first.
        every: the least seconds between two writes within a phase.
        kernel: what to report of the kernel (default: this process's scheduler).
    """

    def __init__(
        self,
        out: Path,
        result: ExperimentResult,
        inner: RunCallbacks,
        *,
        every: float = 1.0,
        kernel: Callable[[], dict[str, Any] | None] = _kernel_state,
    ) -> None:
        self.path = out / STATUS_FILE
        self.result, self.inner, self.every, self.kernel = result, inner, every, kernel
        self._written = float("-inf")

    def phase_started(self, phase: PhaseResult) -> None:
        self.inner.phase_started(phase)
        self.write("running")

    def episode_finished(self, phase: PhaseResult, episode: EpisodeResult) -> None:
        self.inner.episode_finished(phase, episode)
        if time.monotonic() - self._written >= self.every:
            self.write("running")

    def phase_finished(self, phase: PhaseResult) -> None:
        self.inner.phase_finished(phase)
        self.write("running")

    def write(self, state: str) -> None:
        """Replace the status file with the run as it is now, in ``state``."""
        self._written = time.monotonic()
        data = {
            "format": STATUS_FORMAT,
            "state": state,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "updated": time.time(),
            "result": self.result.to_dict(),
            "kernel": self.kernel(),
        }
        text = json.dumps(data, indent=1) + "\n"
        write_atomic(self.path, lambda path: path.write_text(text, encoding="utf-8"))

    def finish(self) -> None:
        """The last write: the state the run ended in."""
        result = self.result
        if result.stopped is not None:
            state = result.stopped.split(":", 1)[0]
        elif result.interrupted:
            state = "interrupted"
        elif result.error is not None:
            state = "failed"
        else:
            state = "completed"
        self.write(state)
