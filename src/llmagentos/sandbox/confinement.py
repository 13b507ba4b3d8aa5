"""Which mechanism enforces each limit: a cgroup per sandbox, or (opted into) rlimits.

``auto`` takes cgroup v2, else the v1 hierarchies. A limit the host cannot enforce per
sandbox is refused with :class:`~llmagentos.exceptions.ConfinementUnavailable`, naming
the limit and why, unless the caller opts into the weaker per-process/per-uid rlimit
for it (``allow_weaker=True``, or ``confinement="rlimit"`` for rlimits only).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmagentos.exceptions import ConfigError, ConfinementUnavailable
from llmagentos.sandbox import cgroups
from llmagentos.sandbox.limits import MiB, SandboxLimits

__all__ = ["CONFINEMENTS", "Confinement", "choose"]

CONFINEMENTS = ("auto", "cgroup", "cgroup-v1", "cgroup-v2", "rlimit")
# The cgroup controller each per-sandbox limit needs.
NEEDS = {"memory_mb": "memory", "processes": "pids", "cpu_seconds": "cpuacct", "cpus": "cpu"}
# What a limit falls back to without its controller.
WEAKER = {
    "memory_mb": "RLIMIT_AS, per process; shared memory, memfd and tmpfs pages not counted",
    "processes": "RLIMIT_NPROC, per uid: every sandbox on the host shares it",
    "cpu_seconds": "RLIMIT_CPU, per process",
    "cpus": "not enforced",
}
HINT = (
    "Per-sandbox limits need cgroups: cgroup v2 with the memory and pids controllers, "
    "or the v1 memory and pids hierarchies (plus cpuacct and cpu), writable by this "
    "process (root, or a delegated cgroup named with $LLMAGENTOS_SANDBOX_CGROUP). To run "
    "with the weaker rlimits instead, pass allow_weaker=True (or confinement='rlimit')."
)


def _wanted(limits: SandboxLimits) -> list[str]:
    """The limits of ``limits`` that need a controller (``cpus=None`` needs none)."""
    return [name for name in NEEDS if getattr(limits, name) is not None]


@dataclass(frozen=True)
class Confinement:
    """The confinement of a :class:`~llmagentos.sandbox.Sandbox`.

    Attributes:
        kind: ``cgroup-v2``, ``cgroup-v1`` or ``rlimit``.
        host: the cgroup hierarchy (``None`` for ``rlimit``).
        requested: what the caller asked for.
        allow_weaker: the caller accepts rlimits for limits the host cannot enforce.
    """

    kind: str
    host: cgroups.Host | None
    requested: str
    allow_weaker: bool

    def fallbacks(self, limits: SandboxLimits) -> tuple[str, ...]:
        """The limits of ``limits`` enforced only by their weaker fallback.

        Raises:
            ConfinementUnavailable: some are, and the caller did not opt in.
        """
        if self.host is None:
            return tuple(_wanted(limits))
        missing = {
            name: f"no {NEEDS[name]} controller ({self.host.problem or 'not offered'})"
            for name in _wanted(limits)
            if not self.host.has(NEEDS[name])
        }
        if missing and not self.allow_weaker:
            raise ConfinementUnavailable(self.requested, missing, HINT)
        return tuple(missing)

    def rlimits(self, limits: SandboxLimits) -> dict[str, tuple[int, int]]:
        """The rlimits to set: all of them, less ``nproc`` when a cgroup counts tasks
        (``RLIMIT_NPROC`` is per uid, so one sandbox's processes would starve another's)."""
        values = limits.rlimits()
        if self.host is not None and self.host.has("pids"):
            values.pop("nproc")
        return values

    def open_run(self, limits: SandboxLimits, helpers: int) -> cgroups.RunCgroup | None:
        """A fresh cgroup for one run (``None`` under ``rlimit``); ``helpers`` is how many
        of the backend's own processes the run's task count must leave room for."""
        if self.host is None:
            return None
        fallbacks = self.fallbacks(limits)
        return cgroups.RunCgroup.create(
            self.host,
            memory_bytes=limits.memory_mb * MiB,
            max_tasks=limits.processes + helpers,
            cpus=None if "cpus" in fallbacks else limits.cpus,
        )

    def describe(self, limits: SandboxLimits) -> str:
        fallbacks = self.fallbacks(limits)
        if self.host is None:
            return (
                "confinement rlimit (per process/uid: "
                + "; ".join(f"{name}: {WEAKER[name]}" for name in fallbacks)
                + ")"
            )
        text = f"confinement {self.kind} (one cgroup per run: memory, tasks, CPU time"
        text += ", CPU quota)" if "cpus" not in fallbacks and limits.cpus is not None else ")"
        if fallbacks:
            text += "; weaker: " + "; ".join(f"{n}: {WEAKER[n]}" for n in fallbacks)
        return text


def choose(limits: SandboxLimits, requested: str, allow_weaker: bool) -> Confinement:
    """The confinement for ``requested`` on this host.

    Raises:
        ConfigError: ``requested`` is not one of :data:`CONFINEMENTS`.
        ConfinementUnavailable: a limit of ``limits`` cannot be enforced per sandbox
            (and the caller did not opt in), or an asked-for cgroup version is absent.
    """
    if requested not in CONFINEMENTS:
        known = ", ".join(CONFINEMENTS)
        raise ConfigError("confinement", f"must be one of {known}, got {requested!r}")
    if not isinstance(allow_weaker, bool):
        raise ConfigError("allow_weaker", f"must be a bool, got {allow_weaker!r}")
    if requested == "rlimit":
        return Confinement("rlimit", None, requested, True)
    host = cgroups.detect()
    wrong_version = requested in ("cgroup-v1", "cgroup-v2") and host.kind != requested
    if host.version is None or wrong_version:
        why = host.problem if host.version is None else f"this host offers {host.kind}"
        if requested == "auto" and allow_weaker:
            return Confinement("rlimit", None, requested, True)
        raise ConfinementUnavailable(requested, dict.fromkeys(_wanted(limits), why), HINT)
    confinement = Confinement(host.kind, host, requested, allow_weaker)
    confinement.fallbacks(limits)  # refuses now, not at the first run
    return confinement
