"""The sandboxed processes on this machine: they run as ``nobody`` (uid 65534).

The suite runs on several workers, so other tests' sandboxes may run at the same time;
``maker`` narrows the count to the runs one process made (each run's cgroup is named
after its maker's pid, and a sandboxed process cannot leave its cgroup).
"""

from __future__ import annotations

from pathlib import Path

from llmagentos.sandbox import cgroups


def nobody_pids(maker: int | None = None) -> set[int]:
    """Pids of the processes running as nobody; with ``maker``, only those in a run
    cgroup ``maker`` made (all of them where this host has no cgroups to tell)."""
    if maker is not None and not cgroups.detect().bases:
        maker = None
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if "\nUid:\t65534\t" not in status.read_text():
                continue
            if maker is not None and f"/{maker}-" not in (status.parent / "cgroup").read_text():
                continue
        except OSError:
            continue  # gone meanwhile
        found.add(int(status.parent.name))
    return found
