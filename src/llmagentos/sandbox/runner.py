"""Start a launch in its cgroup, feed stdin, capture bounded output, enforce the clocks.

Under a cgroup confinement the command is prefixed with a tiny ``sh`` that writes its
own pid into the run's ``cgroup.procs`` files and only then ``exec``s the backend, so
every process of the sandbox is born inside the cgroup. The sandbox's total CPU time
is watched from here; afterwards every process left in the cgroup is killed and the
cgroup removed, whatever happened (timeout, cancellation, a crash of the code).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from llmagentos._blocking import run_blocking
from llmagentos.exceptions import SandboxError
from llmagentos.sandbox.backends import Backend, Launch, Plan, system_tool
from llmagentos.sandbox.cgroups import RunCgroup
from llmagentos.sandbox.confinement import Confinement
from llmagentos.sandbox.limits import MiB, SandboxLimits
from llmagentos.sandbox.result import SandboxResult, classify

__all__ = ["Outcome", "execute"]

_CHUNK = 65536
_DRAIN_SECONDS = 2.0  # after the process is gone, how long its pipes may stay open
_HOST_ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
_CPU_POLL = 0.05  # seconds between two reads of the cgroup's CPU time
_JOIN_FAILED = 125
# $1: a token only we know (the code cannot print it: it never sees it); then the
# cgroup.procs files up to "--"; then the command.
_JOIN = (
    'token=$1; shift; while [ "$1" != -- ]; do '
    'echo $$ > "$1" || { echo "$token cannot join $1" >&2; exit 125; }; shift; done; '
    'shift; exec "$@"'
)


@dataclass
class Outcome:
    """A finished run: the result, plus what came through the side channel, if any."""

    result: SandboxResult
    side: bytes = b""


class _Capture:
    """Keeps the first ``keep`` bytes of a stream and counts the rest."""

    def __init__(self, keep: int) -> None:
        self.keep, self.total, self.data = keep, 0, bytearray()

    @property
    def truncated(self) -> bool:
        return self.total > len(self.data)

    async def drain(
        self, stream: asyncio.StreamReader, flood: int, on_flood: Callable[[], None]
    ) -> None:
        while chunk := await stream.read(_CHUNK):
            self.total += len(chunk)
            room = self.keep - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if self.total > flood:
                on_flood()

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the backend's process group; its death tears down the namespaces."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


async def _feed(process: asyncio.subprocess.Process, data: bytes) -> None:
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(data)
        await process.stdin.drain()
    process.stdin.close()


async def _open_side(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader, transport


async def _spawn(launch: Launch, with_stdin: bool) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *launch.argv,
        stdin=asyncio.subprocess.PIPE if with_stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        pass_fds=launch.pass_fds,
        start_new_session=True,  # one process group to kill
        env=_HOST_ENV,
    )


@dataclass
class _Usage:
    """What the run's cgroup counted, read after every process is gone."""

    cpu_seconds: float | None = None
    memory_peak_mb: float | None = None
    oom_kills: int = 0
    memory_refusals: int = 0
    fork_refusals: int = 0


def _usage(cgroup: RunCgroup) -> _Usage:
    peak = cgroup.memory_peak_bytes()
    return _Usage(
        cpu_seconds=cgroup.cpu_seconds(),
        memory_peak_mb=None if peak is None else round(peak / MiB, 1),
        oom_kills=cgroup.oom_kills(),
        memory_refusals=cgroup.memory_refusals(),
        fork_refusals=cgroup.fork_refusals(),
    )


def _killed_by(
    status: int, stderr: str, seconds: float, limits: SandboxLimits, usage: _Usage
) -> tuple[int, str | None]:
    """Why the code stopped: the cgroup's counters first (the kernel's word), then the
    exit status and the traceback."""
    exit_code, killed_by = classify(status, stderr, seconds, limits.cpu_rlimit[0])
    if status == 0:
        return exit_code, killed_by
    if usage.oom_kills:
        return exit_code, "memory_limit"
    # A SIGKILL not from us (nor the kernel's OOM killer) after allocations were refused.
    if killed_by is not None and killed_by.startswith("signal") and usage.memory_refusals:
        return exit_code, "memory_limit"
    if (killed_by is None or killed_by.startswith("signal")) and usage.fork_refusals:
        return exit_code, "process_limit"
    return exit_code, killed_by


def _result(
    *,
    backend: Backend,
    confinement: Confinement | None,
    fallbacks: tuple[str, ...],
    limits: SandboxLimits,
    status: int,
    stopped: list[str],
    seconds: float,
    out: _Capture,
    err: _Capture,
    usage: _Usage,
) -> SandboxResult:
    stderr = err.text()
    exit_code: int | None
    killed_by: str | None
    if stopped:
        exit_code, killed_by = None, stopped[0]
    else:
        exit_code, killed_by = _killed_by(status, stderr, seconds, limits, usage)
    return SandboxResult(
        stdout=out.text(),
        stderr=stderr,
        exit_code=exit_code,
        timed_out=killed_by == "wall_timeout",
        killed_by=killed_by,
        seconds=seconds,
        backend=backend.name,
        truncated=out.truncated or err.truncated,
        confinement=confinement.kind if confinement is not None else "rlimit",
        fallbacks=fallbacks,
        cpu_seconds=usage.cpu_seconds,
        memory_peak_mb=usage.memory_peak_mb,
    )


def _join(launch: Launch, cgroup: RunCgroup | None, token: str) -> None:
    """Prefix the command with the ``sh`` that joins the cgroup before anything runs."""
    if cgroup is None:
        return
    shell = system_tool("sh")
    if shell is None:
        raise SandboxError("no sh in /usr/bin or /bin to place the sandbox in its cgroup")
    launch.argv = [shell, "-c", _JOIN, "llmagentos-join", token, *cgroup.procs_files(),
                   "--", *launch.argv]  # fmt: skip


async def _start(
    backend: Backend,
    plan: Plan,
    *,
    with_stdin: bool,
    side_pipe: tuple[int, int] | None,
    cgroup: RunCgroup | None,
    token: str,
) -> asyncio.subprocess.Process:
    """Launch; close our copies of the descriptors the sandbox inherited."""
    if side_pipe is not None:
        plan = replace(plan, keep_fds=(*plan.keep_fds, side_pipe[1]))
    try:
        launch = backend.launch(plan)
        _join(launch, cgroup, token)
        try:
            return await _spawn(launch, with_stdin)
        finally:
            launch.close()
    except BaseException:
        if side_pipe is not None:
            os.close(side_pipe[0])
        raise
    finally:
        if side_pipe is not None:
            os.close(side_pipe[1])  # the sandbox holds its own copy now


async def _watch_cpu(cgroup: RunCgroup, seconds: float, stop: Callable[[str], None]) -> None:
    """Stop the run once all its processes together used ``seconds`` of CPU."""
    while True:
        await asyncio.sleep(_CPU_POLL)
        used = cgroup.cpu_seconds()
        if used is not None and used >= seconds:
            stop("cpu_limit")
            return


def _finish(cgroup: RunCgroup) -> _Usage:
    """Read the counters, then kill what is left (blocking, short)."""
    usage = _usage(cgroup)  # before kill(): it sets pids.max to 0, refusing more forks
    if not cgroup.kill():
        raise SandboxError(f"processes of sandbox cgroup {cgroup.name} would not die")
    return usage


async def execute(
    backend: Backend,
    plan: Plan,
    *,
    confinement: Confinement | None = None,
    stdin: bytes | None = None,
    side_pipe: tuple[int, int] | None = None,
) -> Outcome:
    """Run ``plan`` under ``backend``; never leaves a process behind, even if cancelled.

    ``confinement`` (``None``: rlimits only) gives the run its own cgroup. ``side_pipe``
    is ``(read_fd, write_fd)`` of a pipe (closed here): the code inherits the write end
    under the same number, and what it writes there is returned, bounded like stdout.
    """
    limits = plan.limits
    fallbacks: tuple[str, ...] = ()
    cgroup: RunCgroup | None = None
    try:
        if confinement is not None:
            fallbacks = confinement.fallbacks(limits)
            plan = replace(plan, rlimits=confinement.rlimits(limits))
            cgroup = await run_blocking(confinement.open_run, limits, backend.helpers)
    except BaseException:
        if side_pipe is not None:
            os.close(side_pipe[0])
            os.close(side_pipe[1])
        raise
    run = _Run(backend, plan, confinement, fallbacks, cgroup)
    try:
        return await _execute(run, stdin, side_pipe)
    finally:
        if cgroup is not None:
            # Shielded: even a cancelled run must not leave its processes or cgroup.
            await asyncio.shield(run_blocking(cgroup.kill))
            await asyncio.shield(run_blocking(cgroup.remove))


@dataclass
class _Run:
    backend: Backend
    plan: Plan
    confinement: Confinement | None
    fallbacks: tuple[str, ...]
    cgroup: RunCgroup | None


def _check_joined(process: asyncio.subprocess.Process, stderr: str, token: str) -> None:
    if process.returncode == _JOIN_FAILED and f"{token} cannot join" in stderr:
        raise SandboxError(f"the sandbox could not join its cgroup: {stderr.strip()[-300:]}")


async def _execute(run: _Run, stdin: bytes | None, side_pipe: tuple[int, int] | None) -> Outcome:
    limits, cgroup = run.plan.limits, run.cgroup
    started = time.monotonic()
    token = secrets.token_hex(16)
    process = await _start(
        run.backend,
        run.plan,
        with_stdin=stdin is not None,
        side_pipe=side_pipe,
        cgroup=cgroup,
        token=token,
    )
    out, err, side = (_Capture(limits.output_bytes) for _ in range(3))
    flood = 2 * limits.output_bytes + (1 << 20)
    stopped: list[str] = []
    usage = _Usage()

    def stop(reason: str) -> None:
        if not stopped:
            stopped.append(reason)
            _kill(process)  # pid 1 of the namespace dies, and every process with it

    on_flood = functools.partial(stop, "output_limit")
    tasks = [
        asyncio.create_task(capture.drain(stream, flood, on_flood))
        for capture, stream in ((out, process.stdout), (err, process.stderr))
        if stream is not None
    ]
    watcher = None
    if cgroup is not None and "cpu_seconds" not in run.fallbacks:
        watcher = asyncio.create_task(_watch_cpu(cgroup, limits.cpu_seconds, stop))
    transport: asyncio.BaseTransport | None = None
    try:
        if side_pipe is not None:
            side_reader, transport = await _open_side(side_pipe[0])
            tasks.append(asyncio.create_task(side.drain(side_reader, flood, on_flood)))
        if stdin is not None:
            tasks.append(asyncio.create_task(_feed(process, stdin)))
        try:
            await asyncio.wait_for(process.wait(), limits.wall_seconds)
        except TimeoutError:
            stop("wall_timeout")
            await process.wait()
        seconds = time.monotonic() - started
        if cgroup is not None:
            # The namespace's pid 1 is gone; nothing left in the cgroup may hold the
            # pipes open: kill the rest before draining.
            usage = await run_blocking(_finish, cgroup)
        await asyncio.wait(tasks, timeout=_DRAIN_SECONDS)
    finally:
        if watcher is not None:
            tasks.append(watcher)
        if process.returncode is None:  # cancelled: leave nothing running
            _kill(process)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(process.wait())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if transport is not None:
            transport.close()
    assert process.returncode is not None
    _check_joined(process, err.text(), token)
    result = _result(
        backend=run.backend,
        confinement=run.confinement,
        fallbacks=run.fallbacks,
        limits=limits,
        status=process.returncode,
        stopped=stopped,
        seconds=seconds,
        out=out,
        err=err,
        usage=usage,
    )
    return Outcome(result=result, side=bytes(side.data))
