"""Start a launch, feed stdin, capture bounded output, enforce the wall clock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from llmagentos.sandbox.backends import Backend, Launch, Plan
from llmagentos.sandbox.limits import SandboxLimits
from llmagentos.sandbox.result import SandboxResult, classify

__all__ = ["Outcome", "execute"]

_CHUNK = 65536
_DRAIN_SECONDS = 2.0  # after the process is gone, how long its pipes may stay open
_HOST_ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}


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


def _result(
    *,
    backend: Backend,
    limits: SandboxLimits,
    status: int,
    stopped: list[str],
    seconds: float,
    out: _Capture,
    err: _Capture,
) -> SandboxResult:
    stderr = err.text()
    exit_code: int | None
    killed_by: str | None
    if stopped:
        exit_code, killed_by = None, stopped[0]
    else:
        exit_code, killed_by = classify(status, stderr, seconds, limits.cpu_rlimit[0])
    return SandboxResult(
        stdout=out.text(),
        stderr=stderr,
        exit_code=exit_code,
        timed_out=killed_by == "wall_timeout",
        killed_by=killed_by,
        seconds=seconds,
        backend=backend.name,
        truncated=out.truncated or err.truncated,
    )


async def _start(
    backend: Backend, plan: Plan, with_stdin: bool, side_pipe: tuple[int, int] | None
) -> asyncio.subprocess.Process:
    """Launch; close our copies of the descriptors the sandbox inherited."""
    if side_pipe is not None:
        plan = replace(plan, keep_fds=(*plan.keep_fds, side_pipe[1]))
    try:
        launch = backend.launch(plan)
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


async def execute(
    backend: Backend,
    plan: Plan,
    *,
    stdin: bytes | None = None,
    side_pipe: tuple[int, int] | None = None,
) -> Outcome:
    """Run ``plan`` under ``backend``; never leaves a process behind, even if cancelled.

    ``side_pipe`` is ``(read_fd, write_fd)`` of a pipe (closed here): the code inherits
    the write end under the same number, and what it writes there is returned,
    bounded like stdout.
    """
    limits = plan.limits
    started = time.monotonic()
    process = await _start(backend, plan, stdin is not None, side_pipe)
    out, err, side = (_Capture(limits.output_bytes) for _ in range(3))
    flood = 2 * limits.output_bytes + (1 << 20)
    stopped: list[str] = []

    def on_flood() -> None:
        if not stopped:
            stopped.append("output_limit")
            _kill(process)

    assert process.stdout is not None
    assert process.stderr is not None
    tasks = [
        asyncio.create_task(out.drain(process.stdout, flood, on_flood)),
        asyncio.create_task(err.drain(process.stderr, flood, on_flood)),
    ]
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
            if not stopped:
                stopped.append("wall_timeout")
            _kill(process)
            await process.wait()
        seconds = time.monotonic() - started
        await asyncio.wait(tasks, timeout=_DRAIN_SECONDS)
    finally:
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
    result = _result(
        backend=backend,
        limits=limits,
        status=process.returncode,
        stopped=stopped,
        seconds=seconds,
        out=out,
        err=err,
    )
    return Outcome(result=result, side=bytes(side.data))
