"""Command lines that start Python confined: bubblewrap, or ``unshare`` as a fallback.

Both backends give the code the same view: a read-only ``/usr`` (plus the interpreter's
own install), a fresh ``/proc`` and minimal ``/dev``, size-capped in-memory ``/sandbox``
(the working directory, holding copies of the input files) and ``/tmp``, no network
interfaces but a downed loopback, its own PID/IPC/UTS namespaces, a clean environment,
and the process limits of :class:`SandboxLimits` set by ``prlimit``/``setrlimit``.
When the host runs us as root, the code runs as the real user 65534 (``nobody``): a
root-owned process would be exempt from ``RLIMIT_NPROC``, and ``nobody`` owns nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from llmagentos.sandbox.limits import SandboxLimits

__all__ = [
    "SANDBOX_ENV",
    "WORKDIR",
    "Backend",
    "BwrapBackend",
    "Launch",
    "Plan",
    "UnshareBackend",
    "interpreter",
]

WORKDIR = "/sandbox"
NOBODY = 65534
SANDBOX_ENV: dict[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKDIR,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "USER": "sandbox",
    "LOGNAME": "sandbox",
}
_SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
# Root-level entries the dynamic loader and interpreter may reach through.
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def interpreter() -> tuple[str, str]:
    """``(python, prefix)``: the base interpreter's real path and its install prefix.

    A virtualenv's python is a symlink to the base one; the sandbox runs the base
    interpreter with ``-I -S``, so only the standard library is importable.
    """
    prefix = os.path.realpath(sys.base_prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable),
        os.path.join(prefix, "bin", f"python{version}"),
        os.path.join(prefix, "bin", "python3"),
    ]
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if real.startswith(prefix + os.sep) and os.access(real, os.X_OK):
            return real, prefix
    raise FileNotFoundError(f"no python interpreter found under sys.base_prefix {prefix!r}")


def system_tool(name: str) -> str | None:
    """``name`` from the system directories (bound read-only into the sandbox)."""
    return shutil.which(name, path=_SYSTEM_PATH)


@dataclass(frozen=True)
class Plan:
    """One run: where the inputs are staged and what the interpreter is asked to do.

    Attributes:
        stage: the host temporary directory of this run (removed afterwards).
        files: ``(relative path under /sandbox, host file holding the content)``.
        python_args: the interpreter's arguments (flags, script, argv).
        limits: the run's limits.
        keep_fds: extra descriptors the code inherits (the test report channel).
        rlimits: the rlimits to set (default: all of ``limits.rlimits()``; under a
            cgroup, ``nproc`` is left out).
    """

    stage: Path
    files: list[tuple[str, Path]]
    python_args: list[str]
    limits: SandboxLimits
    keep_fds: tuple[int, ...] = ()
    rlimits: dict[str, tuple[int, int]] | None = None

    def resource_limits(self) -> dict[str, tuple[int, int]]:
        return self.rlimits if self.rlimits is not None else self.limits.rlimits()


@dataclass
class Launch:
    """A ready command line, the descriptors it inherits, and ours to close after."""

    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    opened: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.opened:
            os.close(fd)
        self.opened.clear()


class Backend(Protocol):
    """Builds the command line that runs a :class:`Plan` confined."""

    name: str
    description: str
    helpers: int  # the backend's own processes in the sandbox's cgroup

    def launch(self, plan: Plan) -> Launch: ...


_UNPRIVILEGED = [
    "--unshare-user", "--disable-userns", "--uid", str(NOBODY), "--gid", str(NOBODY),
    "--cap-drop", "ALL",
]  # fmt: skip


def _prlimit_args(binary: str, rlimits: dict[str, tuple[int, int]]) -> list[str]:
    return [binary, *(f"--{k}={s}:{h}" for k, (s, h) in rlimits.items()), "--"]


def _parents(path: str) -> list[str]:
    """``/a``, ``/a/b`` for ``/a/b/c``: the directories bwrap must create, in order."""
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


class BwrapBackend:
    """Bubblewrap: a new mount namespace whose root holds only what Python needs."""

    name = "bwrap"
    description = (
        "bubblewrap: private root (read-only /usr and interpreter), new net/pid/ipc/uts "
        "namespaces, uid 65534 without capabilities, no nested user namespaces, "
        "no_new_privs, rlimits via prlimit"
    )

    def __init__(self, bwrap: str, prlimit: str, setpriv: str | None) -> None:
        self.bwrap, self.prlimit, self.setpriv = bwrap, prlimit, setpriv
        self.python, self.prefix = interpreter()
        self.as_root = os.geteuid() == 0
        # The monitoring bwrap and its pid 1 (as root, also the inner bwrap).
        self.helpers = 3 if self.as_root else 2
        if self.as_root and setpriv is None:
            raise FileNotFoundError("setpriv (util-linux) is needed to drop root")
        if self.as_root and not os.path.realpath(bwrap).startswith("/usr/"):
            # The inner bwrap runs inside the sandbox, which only has /usr.
            raise FileNotFoundError(f"bwrap must live under /usr when run as root: {bwrap}")

    def _root_args(self) -> list[str]:
        args = ["--ro-bind", "/usr", "/usr"]
        for name in _ROOT_LINKS:
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        if not self.prefix.startswith("/usr/"):
            # bwrap would create the parents 0700; nobody must be able to traverse them.
            for parent in _parents(self.prefix + "/x"):
                args += ["--perms", "0755", "--dir", parent]
            args += ["--ro-bind", self.prefix, self.prefix]
        return args

    def launch(self, plan: Plan) -> Launch:
        size = str(plan.limits.disk_mb * 1024 * 1024)
        args = [
            self.bwrap,
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox",
            "--die-with-parent", "--new-session",
        ]  # fmt: skip
        if not self.as_root:
            args += _UNPRIVILEGED  # a user namespace maps us to 65534 and cannot nest
        args += self._root_args()
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
        args += ["--perms", "1777", "--size", size, "--tmpfs", WORKDIR]
        launch = Launch(argv=[])
        made: set[str] = set()
        for relative, host in plan.files:
            target = f"{WORKDIR}/{relative}"
            for parent in _parents(target)[1:]:
                if parent not in made:
                    made.add(parent)
                    args += ["--perms", "0777", "--dir", parent]
            fd = os.open(host, os.O_RDONLY | os.O_CLOEXEC)
            launch.opened.append(fd)
            args += ["--perms", "0666", "--file", str(fd), target]
        args += ["--chdir", WORKDIR, "--clearenv"]
        for key, value in SANDBOX_ENV.items():
            args += ["--setenv", key, value]
        if self.as_root:
            # Privileged bwrap keeps root; setpriv drops to the real nobody for good, and
            # a second, unprivileged bwrap forbids nested user namespaces (which would
            # give the code capabilities there). As host root the code would escape
            # RLIMIT_NPROC, so it must really be nobody, not root mapped to 65534.
            args += [str(self.setpriv), "--reuid", str(NOBODY), "--regid", str(NOBODY)]
            args += ["--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
            args += ["--no-new-privs", "--", self.bwrap, *_UNPRIVILEGED]
            args += ["--die-with-parent", "--dev-bind", "/", "/", "--chdir", WORKDIR]
        args += _prlimit_args(self.prlimit, plan.resource_limits())
        args += [self.python, *plan.python_args]
        launch.argv = args
        launch.pass_fds = (*launch.opened, *plan.keep_fds)
        return launch


_LAUNCHER = Path(__file__).with_name("unshare_launcher.py")


class UnshareBackend:
    """util-linux ``unshare`` plus a small launcher that builds a private root.

    Weaker than bubblewrap: it relies on our own launcher (mounts through ``ctypes``,
    ``chroot``) rather than a dedicated, audited tool. Without root it needs a user
    namespace, and the code then runs as that namespace's root with every capability
    dropped.
    """

    name = "unshare"
    description = (
        "unshare: new net/pid/ipc/uts/mount namespaces, chroot into a private root "
        "(read-only /usr and interpreter), uid 65534 or no capabilities, setrlimit"
    )

    def __init__(
        self, unshare: str, *, user_namespace: bool | None = None, setpriv: str | None = None
    ) -> None:
        self.unshare, self.setpriv = unshare, setpriv
        self.python, self.prefix = interpreter()
        self.helpers = 2  # unshare and the launcher (pid 1 of the namespace)
        # Without root, only a user namespace lets us mount; forcing it as root tests it.
        self.user_namespace = os.geteuid() != 0 if user_namespace is None else user_namespace

    def launch(self, plan: Plan) -> Launch:
        root_links: list[list[str]] = []
        binds = ["/usr"]
        for name in _ROOT_LINKS:
            path = Path("/") / name
            if path.is_symlink():
                root_links.append([os.readlink(path), str(path)])
            elif path.is_dir():
                binds.append(str(path))
        if not self.prefix.startswith("/usr/"):
            binds.append(self.prefix)
        root = plan.stage / "root"
        root.mkdir(mode=0o700)
        spec = {
            "root": str(root),
            "binds": binds,
            "links": root_links,
            "files": [[relative, str(host)] for relative, host in plan.files],
            "workdir": WORKDIR,
            "disk_bytes": plan.limits.disk_mb * 1024 * 1024,
            "rlimits": plan.resource_limits(),
            "uid": None if self.user_namespace else NOBODY,
            "python": self.python,
            "argv": [self.python, *plan.python_args],
            "env": SANDBOX_ENV,
        }
        args = []
        if self.setpriv is not None:
            # unshare dies with us, and its --kill-child takes the sandbox with it.
            args += [self.setpriv, "--pdeathsig", "KILL", "--"]
        args += [self.unshare]
        if self.user_namespace:
            args += ["--user", "--map-root-user"]
        args += ["--net", "--pid", "--fork", "--ipc", "--uts", "--mount"]
        args += ["--propagation", "private", "--kill-child"]
        source = _LAUNCHER.read_text(encoding="utf-8")
        args += [self.python, "-I", "-S", "-B", "-c", source, json.dumps(spec)]
        return Launch(argv=args, pass_fds=plan.keep_fds)
