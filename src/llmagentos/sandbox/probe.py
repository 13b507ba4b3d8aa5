"""Find a backend that really confines code: try a trivial run once per process.

A backend counts as available only if a probe script ran inside it and reported what
we expect (a non-root uid when we are root, no network interface up). Otherwise the
exact failure is kept, so :class:`SandboxUnavailable` can say what was tried.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from llmagentos.exceptions import ConfigError, SandboxUnavailable
from llmagentos.sandbox.backends import (
    Backend,
    BwrapBackend,
    Plan,
    UnshareBackend,
    system_tool,
)
from llmagentos.sandbox.limits import SandboxLimits

__all__ = ["BACKENDS", "clear_cache", "probe", "select"]

BACKENDS = ("bwrap", "unshare")
_TOKEN = "llmagentos-sandbox-probe-ok"
_PROBE = f"""\
import os, socket
interfaces = [name for _, name in socket.if_nameindex() if name != "lo"]
print({_TOKEN!r}, os.getuid(), ",".join(interfaces) or "-")
"""
_HINTS = {
    "bwrap": "Install bubblewrap (apt-get install bubblewrap, or dnf install bubblewrap).",
    "unshare": (
        "unshare (util-linux) needs root or unprivileged user namespaces "
        "(sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0); "
        "installing bubblewrap (apt-get install bubblewrap) is the better fix."
    ),
    "util-linux": "Install util-linux (it provides prlimit, setpriv and unshare).",
}
_lock = threading.Lock()
_cache: dict[tuple[str, str | None], tuple[Backend | None, str]] = {}


def clear_cache() -> None:
    """Forget earlier probes (tests; or after installing a missing tool)."""
    with _lock:
        _cache.clear()


def _build(name: str) -> tuple[Backend | None, str]:
    """The backend object, or ``None`` and why it cannot even be built."""
    prlimit, setpriv = system_tool("prlimit"), system_tool("setpriv")
    if name == "bwrap":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            return None, f"bwrap: not found on PATH. {_HINTS['bwrap']}"
        if prlimit is None or (os.geteuid() == 0 and setpriv is None):
            return None, f"bwrap: prlimit/setpriv not found. {_HINTS['util-linux']}"
        return BwrapBackend(bwrap, prlimit, setpriv), ""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, f"unshare: not found on PATH. {_HINTS['util-linux']}"
    return UnshareBackend(unshare, setpriv=setpriv), ""


def _trial(backend: Backend) -> str:
    """Run the probe script; ``""`` when it ran confined, else the exact problem."""
    limits = SandboxLimits(cpu_seconds=5, wall_seconds=15)
    with tempfile.TemporaryDirectory(prefix="llmagentos-probe-") as stage:
        script = Path(stage) / "main.py"
        script.write_text(_PROBE, encoding="utf-8")
        plan = Plan(Path(stage), [("main.py", script)], ["-I", "-S", "main.py"], limits)
        launch = backend.launch(plan)
        try:
            done = subprocess.run(
                launch.argv,
                capture_output=True,
                pass_fds=launch.pass_fds,
                timeout=limits.wall_seconds,
                stdin=subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin"},
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as err:
            return f"{type(err).__name__}: {err}"
        finally:
            launch.close()
    text = done.stdout.decode(errors="replace").split()
    problem = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
    if done.returncode != 0 or len(text) != 3 or text[0] != _TOKEN:
        return f"trial run failed ({problem[-500:]})"
    if os.geteuid() == 0 and text[1] == "0":
        return "trial run ran as root: refusing"
    if text[2] != "-":
        return f"trial run saw network interfaces {text[2]}: refusing"
    return ""


def probe(name: str) -> tuple[Backend | None, str]:
    """``(backend, "")`` when ``name`` works here, else ``(None, problem)``; cached."""
    key = (name, shutil.which("bwrap" if name == "bwrap" else "unshare"))
    with _lock:
        if key in _cache:
            return _cache[key]
    try:
        backend, problem = _build(name)
    except OSError as err:
        backend, problem = None, f"{name}: {type(err).__name__}: {err}"
    if backend is not None:
        try:
            problem = _trial(backend)
        except OSError as err:
            problem = f"{type(err).__name__}: {err}"
        if problem:
            problem = f"{name}: {problem}. {_HINTS[name]}"
    found = (backend if not problem else None), problem
    with _lock:
        _cache[key] = found
    return found


def select(requested: str) -> Backend:
    """The backend to use for ``requested`` (``auto`` tries bwrap, then unshare).

    Raises:
        ConfigError: ``requested`` is not a backend name.
        SandboxUnavailable: nothing usable; names every probe and its error.
    """
    if requested not in ("auto", *BACKENDS):
        raise ConfigError("backend", f"must be 'auto', 'bwrap' or 'unshare', got {requested!r}")
    problems = []
    for name in BACKENDS if requested == "auto" else (requested,):
        backend, problem = probe(name)
        if backend is not None:
            return backend
        problems.append(problem)
    hint = _HINTS["bwrap"] if requested != "unshare" else _HINTS["unshare"]
    raise SandboxUnavailable(requested, problems, hint)
