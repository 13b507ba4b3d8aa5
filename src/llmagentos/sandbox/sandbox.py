"""The :class:`Sandbox`: run untrusted Python, or a solution against its tests, confined."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from llmagentos.exceptions import ConfigError
from llmagentos.modules.base import run_sync
from llmagentos.sandbox import probe
from llmagentos.sandbox.backends import Backend, Plan
from llmagentos.sandbox.confinement import choose
from llmagentos.sandbox.limits import SandboxLimits
from llmagentos.sandbox.report import TestReport, parse_report, test_names
from llmagentos.sandbox.result import SandboxResult
from llmagentos.sandbox.runner import execute
from llmagentos.telemetry.spans import set_attributes, span
from llmagentos.telemetry.state import TELEMETRY

__all__ = ["Sandbox"]

SCRIPT = "main.py"
RUNNER = "_llmagentos_tests.py"
# -E -s: no PYTHON* variables, no user site (-I without -P: the script's directory
# stays importable, for the files given); -S: no site-packages (stdlib only, and a
# faster start; exit()/quit() come from site: use sys.exit()); -B: no .pyc files;
# -u: unbuffered, so output printed before a kill is not lost.
PYTHON_FLAGS = ("-E", "-s", "-S", "-B", "-u", "-X", "utf8")
# The test runner: isolated (-I: no cwd on sys.path, where the candidate can write).
RUNNER_FLAGS = ("-I", "-S", "-B", "-u", "-X", "utf8")
_MAX_FILES = 1000
_HERE = Path(__file__).parent


def _check_files(files: Mapping[str, str], reserved: Sequence[str], disk_mb: int) -> None:
    if len(files) > _MAX_FILES:
        raise ConfigError("files", f"at most {_MAX_FILES} files, got {len(files)}")
    total = 0
    for name, content in files.items():
        path = PurePosixPath(name)
        if (
            not name
            or path.is_absolute()
            or ".." in path.parts
            or str(path) in (".", "")
            or "\0" in name
        ):
            raise ConfigError("files", f"{name!r} must be a relative path inside the workdir")
        if str(path) in reserved:
            raise ConfigError("files", f"{name!r} is reserved by the sandbox")
        if not isinstance(content, str):
            raise ConfigError("files", f"{name!r}: content must be str")
        total += len(content.encode())
    if total > disk_mb * 1024 * 1024:
        raise ConfigError("files", f"{total} bytes do not fit in disk_mb={disk_mb}")


class Sandbox:
    """Runs Python code in a separate, confined process; see ``docs/sandbox.md``.

    Every run gets fresh in-memory ``/sandbox`` (the working directory) and ``/tmp``,
    a clean environment, no network, its own cgroup holding the limits of ``limits``
    for the whole sandbox, and the wall clock enforced from outside. Code gets the
    standard library only.

    Args:
        limits: the default limits of a run.
        backend: ``auto`` (bubblewrap, then ``unshare``), ``bwrap`` or ``unshare``.
        confinement: ``auto`` (cgroup v2, else v1), ``cgroup``, ``cgroup-v2``,
            ``cgroup-v1``, or ``rlimit``: the documented weaker fallback, per process
            and per uid (every sandbox on the host then shares ``processes``).
        allow_weaker: with ``auto``, accept that fallback for each limit the host
            cannot enforce per sandbox instead of refusing; results list them in
            ``fallbacks``.

    Raises:
        SandboxUnavailable: no backend can confine code on this host; the sandbox
            never runs code unconfined.
        ConfinementUnavailable: a limit cannot be enforced per sandbox here (names
            the limit and why), and the caller did not opt into the fallback.
        ConfigError: a bad ``backend``, ``confinement`` or ``allow_weaker``.
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        backend: str = "auto",
        *,
        confinement: str = "auto",
        allow_weaker: bool = False,
    ) -> None:
        self.limits = limits if limits is not None else SandboxLimits()
        if not isinstance(self.limits, SandboxLimits):
            raise ConfigError("limits", f"must be a SandboxLimits, got {type(limits).__name__}")
        self._confinement = choose(self.limits, confinement, allow_weaker)
        self._backend: Backend = probe.select(backend)

    @property
    def backend(self) -> str:
        """The backend in use: ``bwrap`` or ``unshare``."""
        return self._backend.name

    @property
    def confinement(self) -> str:
        """What enforces the limits: ``cgroup-v2``, ``cgroup-v1`` or ``rlimit``."""
        return self._confinement.kind

    def describe(self) -> str:
        """One paragraph: the backend, what it isolates, the confinement and the limits."""
        limits = ", ".join(f"{k}={v}" for k, v in vars(self.limits).items())
        confinement = self._confinement.describe(self.limits)
        return f"{self._backend.description}; {confinement}. Limits: {limits}."

    def __repr__(self) -> str:
        return (
            f"Sandbox(backend={self.backend!r}, confinement={self.confinement!r}, "
            f"limits={self.limits!r})"
        )

    async def _run(
        self,
        files: Mapping[str, str],
        python_args: list[str],
        *,
        stdin: bytes | None,
        limits: SandboxLimits,
        nonce: str | None = None,
    ) -> tuple[SandboxResult, bytes]:
        if not TELEMETRY.on:
            return await self._staged_run(files, python_args, stdin, limits, nonce)
        attributes = {
            "llmagentos.sandbox.backend": self.backend,
            "llmagentos.sandbox.files": len(files),
            "llmagentos.sandbox.wall_seconds_limit": limits.wall_seconds,
        }
        with span("sandbox run", attributes) as current:
            result, side = await self._staged_run(files, python_args, stdin, limits, nonce)
            set_attributes(
                current,
                {
                    "llmagentos.sandbox.exit_code": result.exit_code,
                    "llmagentos.sandbox.timed_out": result.timed_out,
                    "llmagentos.sandbox.killed_by": result.killed_by,
                    "llmagentos.sandbox.seconds": result.seconds,
                    "llmagentos.sandbox.confinement": result.confinement,
                },
            )
            return result, side

    async def _staged_run(
        self,
        files: Mapping[str, str],
        python_args: list[str],
        stdin: bytes | None,
        limits: SandboxLimits,
        nonce: str | None,
    ) -> tuple[SandboxResult, bytes]:
        """Stage ``files``, run, clean up. With a ``nonce``, open the report channel and
        tell the runner ``NONCE FD`` on stdin's first line, before ``stdin``."""
        side_pipe = None
        if nonce is not None:
            side_pipe = os.pipe()
            stdin = f"{nonce} {side_pipe[1]}\n".encode() + (stdin or b"")
        with tempfile.TemporaryDirectory(prefix="llmagentos-sandbox-") as folder:
            stage = Path(folder)
            inputs = stage / "files"
            staged = []
            for index, (name, content) in enumerate(files.items()):
                host = inputs / str(index)
                host.parent.mkdir(exist_ok=True)
                host.write_text(content, encoding="utf-8")
                staged.append((str(PurePosixPath(name)), host))
            plan = Plan(stage, staged, python_args, limits)
            outcome = await execute(
                self._backend,
                plan,
                confinement=self._confinement,
                stdin=stdin,
                side_pipe=side_pipe,
            )
        return outcome.result, outcome.side

    async def arun_python(
        self,
        code: str,
        *,
        files: Mapping[str, str] | None = None,
        stdin: str | None = None,
        argv: Sequence[str] = (),
        limits: SandboxLimits | None = None,
    ) -> SandboxResult:
        """Run ``code`` as ``/sandbox/main.py`` and return what happened.

        Args:
            code: the Python source.
            files: more files for the working directory, by relative path.
            stdin: text fed to standard input (none: stdin is ``/dev/null``).
            argv: ``sys.argv[1:]``.
            limits: overrides the sandbox's limits for this run.

        The code's own failures (exceptions, timeouts, limits) are in the result,
        never raised.
        """
        run_limits = limits or self.limits
        extra = dict(files or {})
        _check_files(extra, (SCRIPT,), run_limits.disk_mb)
        result, _ = await self._run(
            {SCRIPT: code, **extra},
            [*PYTHON_FLAGS, SCRIPT, *map(str, argv)],
            stdin=None if stdin is None else stdin.encode(),
            limits=run_limits,
        )
        return result

    def run_python(
        self,
        code: str,
        *,
        files: Mapping[str, str] | None = None,
        stdin: str | None = None,
        argv: Sequence[str] = (),
        limits: SandboxLimits | None = None,
    ) -> SandboxResult:
        """Synchronous :meth:`arun_python` (works inside a running event loop too)."""
        return run_sync(self.arun_python(code, files=files, stdin=stdin, argv=argv, limits=limits))

    async def arun_tests(
        self,
        solution: str,
        tests: str,
        *,
        per_test_seconds: float = 2.0,
        files: Mapping[str, str] | None = None,
        limits: SandboxLimits | None = None,
    ) -> TestReport:
        """Run ``tests`` (``def test_*():`` functions using ``assert``, which do
        ``from solution import *``) against ``solution`` inside the sandbox.

        The tests run in a process of their own, out of the candidate's reach; the
        solution runs in another and answers their calls with plain data (see
        ``docs/sandbox.md``). Only the ``test*`` functions defined in ``tests`` count.
        Each test has a SIGALRM guard of ``per_test_seconds``; the whole run has the
        sandbox's limits. Failures are in the report, never raised.
        """
        if not per_test_seconds > 0:
            raise ConfigError("per_test_seconds", f"must be > 0, got {per_test_seconds!r}")
        run_limits = limits or self.limits
        reserved = ("solution.py", "test_solution.py", RUNNER)
        extra = dict(files or {})
        _check_files(extra, reserved, run_limits.disk_mb)
        nonce = secrets.token_hex(16)
        # The tests never touch the disk the candidate shares: they reach the runner
        # on its stdin, with the .py files the tests may import.
        payload = {
            "tests": tests,
            "names": test_names(tests),
            "modules": {name: text for name, text in extra.items() if name.endswith(".py")},
            "wire": (_HERE / "wire.py").read_text(encoding="utf-8"),
            "worker": (_HERE / "worker.py").read_text(encoding="utf-8"),
        }
        sources = {
            "solution.py": solution,
            RUNNER: (_HERE / "testing.py").read_text(encoding="utf-8"),
            **extra,
        }
        result, side = await self._run(
            sources,
            [*RUNNER_FLAGS, RUNNER, f"{per_test_seconds:g}"],
            stdin=json.dumps(payload).encode(),
            limits=run_limits,
            nonce=nonce,
        )
        return parse_report(side, nonce, tests, result)

    def run_tests(
        self,
        solution: str,
        tests: str,
        *,
        per_test_seconds: float = 2.0,
        files: Mapping[str, str] | None = None,
        limits: SandboxLimits | None = None,
    ) -> TestReport:
        """Synchronous :meth:`arun_tests` (works inside a running event loop too)."""
        return run_sync(
            self.arun_tests(
                solution, tests, per_test_seconds=per_test_seconds, files=files, limits=limits
            )
        )
