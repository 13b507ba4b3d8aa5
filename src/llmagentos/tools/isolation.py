"""Process-isolated tools: a sync tool's call runs in a worker process, killed on timeout.

A thread cannot be stopped, so a sync tool that hangs keeps its thread for good, and
one that crashes the interpreter (a segfault in a C extension, ``os._exit``) takes the
whole runtime with it. ``@tool(isolation="process")`` runs the tool in a worker process
of a :class:`ProcessPool` instead:

* the call's arguments cross as JSON (validated again in the worker by the tool's own
  model) and so does the result: the parent never unpickles anything a worker sends;
* a call that times out or is cancelled kills its worker (``SIGKILL``) and reaps it,
  so nothing is left behind; a worker that dies mid-call is an error result naming its
  exit code; a reply larger than ``max_reply_bytes`` kills the worker too;
* a worker serves one tool only, one call at a time, and is kept for that tool's next
  call (``max_idle`` of them at most); at most ``max_processes`` workers live at once,
  and calls beyond wait for one within their own timeout;
* a worker is a fresh interpreter (``python -c``, never a fork of this threaded
  process), in a session of its own: a kill takes the processes the tool started with
  it. On Linux it also dies with its parent.

The tool must be importable in a fresh interpreter as ``module:qualname`` (a function
at module level of an importable module, not a closure, a lambda or the script run as
``__main__``); the worker gets this process's ``sys.path`` and environment, but none of
the caller's context variables (a durable run's idempotency key, say).

Process isolation keeps a tool from freezing or crashing the runtime; it is not a
sandbox: the worker has the runtime's user, files and network (run untrusted *code* in
:mod:`llmagentos.sandbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from llmagentos._blocking import blocking_executor, run_blocking
from llmagentos._json import jsonable
from llmagentos.exceptions import ConfigError, ToolProcessError

__all__ = ["ProcessPool"]

_HEADER = struct.Struct("!I")  # a frame: its length, then that many bytes of JSON
_MAX_REQUEST = 64 << 20
_PARSE_ON_LOOP = 256 << 10  # replies up to this size are parsed on the event loop
_PR_SET_PDEATHSIG = 1
_BOOT = (
    "import sys\nfrom llmagentos.tools.isolation import _worker_main\n_worker_main(*sys.argv[1:])"
)
_BOOT_SECONDS = 120.0  # a fresh interpreter importing the tool's module, on a busy machine


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    sock: socket.socket  # the parent's end, non-blocking
    target: str


class ProcessPool:
    """Worker processes for process-isolated tools; see the module docstring.

    Args:
        max_processes: workers alive at once (busy or idle).
        max_idle: idle workers kept for their tool's next call.
        max_reply_bytes: the largest JSON reply accepted from a worker.
    """

    def __init__(
        self, max_processes: int = 4, *, max_idle: int | None = None, max_reply_bytes: int = 8 << 20
    ) -> None:
        if not isinstance(max_processes, int) or max_processes < 1:
            raise ConfigError("max_processes", f"must be an integer >= 1 (got {max_processes!r})")
        idle = max_processes if max_idle is None else max_idle
        if not isinstance(idle, int) or idle < 0:
            raise ConfigError("max_idle", f"must be an integer >= 0 (got {max_idle!r})")
        self.max_processes = max_processes
        self.max_idle = idle
        self.max_reply_bytes = max_reply_bytes
        self._lock = threading.Lock()
        self._idle: deque[_Worker] = deque()  # oldest first
        self._busy = 0  # workers running a call, or being started for one
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._counts = {"calls": 0, "started": 0, "killed": 0, "crashed": 0}

    # -- one call ----------------------------------------------------------------------------

    async def run(
        self, target: str, arguments: dict[str, Any], *, timeout: float | None = None
    ) -> tuple[bool, Any]:
        """Run the tool ``target`` (``module:qualname``) with JSON ``arguments`` in a worker,
        within ``timeout`` seconds (waiting for a worker and starting one included).

        Returns ``(True, value)`` with the tool's JSON value, or ``(False, message)``
        when the tool raised (``"ValueError: ..."``, as in a thread).

        Raises:
            TimeoutError: out of time; a worker running the call is killed first. The
                message says which stage the call had reached.
            ToolProcessError: the worker died, or its reply was too large or malformed.
        """
        # A fresh random id per call: a frame the tool wrote itself on an earlier call
        # (its code can reach the socket) cannot pass for this call's reply.
        call_id = secrets.token_hex(16)
        request = json.dumps({"id": call_id, "target": target, "arguments": arguments}).encode()
        if len(request) > _MAX_REQUEST:
            raise ToolProcessError(target, f"arguments too large ({len(request)} bytes)")
        stage = [f"still waiting for a worker process: all {self.max_processes} busy"]
        try:
            async with asyncio.timeout(timeout):
                worker = await self._acquire(target, stage)
                stage[0] = "its worker process was killed"
                keep = False
                try:
                    loop = asyncio.get_running_loop()
                    await loop.sock_sendall(worker.sock, _HEADER.pack(len(request)) + request)
                    reply = await self._reply(worker, call_id)
                    keep = True
                finally:
                    await self._release(worker, keep)
        except TimeoutError:
            raise TimeoutError(stage[0]) from None
        if reply["ok"]:
            return True, reply.get("value")
        error = reply.get("error")
        return False, error if isinstance(error, str) else "the tool failed"

    async def _reply(self, worker: _Worker, call_id: str) -> dict[str, Any]:
        reply = await self._frame(worker)
        if not isinstance(reply.get("ok"), bool):
            raise ToolProcessError(worker.target, "its worker sent a malformed reply")
        if reply.get("id") != call_id:
            raise ToolProcessError(worker.target, "its worker answered another call")
        return reply

    async def _frame(self, worker: _Worker) -> dict[str, Any]:
        """The next JSON object the worker sends (at most ``max_reply_bytes``)."""
        header = await self._read(worker, _HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > self.max_reply_bytes:
            raise ToolProcessError(
                worker.target, f"its reply has {size} bytes (at most {self.max_reply_bytes})"
            )
        body = await self._read(worker, size)
        try:
            # A large reply is parsed off the loop: megabytes of JSON take milliseconds.
            frame = (
                json.loads(body) if size < _PARSE_ON_LOOP else await run_blocking(json.loads, body)
            )
        except (ValueError, RecursionError):
            frame = None
        if not isinstance(frame, dict):
            raise ToolProcessError(worker.target, "its worker sent a malformed reply")
        return frame

    async def _read(self, worker: _Worker, size: int) -> bytes:
        loop = asyncio.get_running_loop()
        data = bytearray()
        while len(data) < size:
            chunk = await loop.sock_recv(worker.sock, min(size - len(data), 1 << 20))
            if not chunk:
                code = await run_blocking(_reap, worker.process)
                with self._lock:
                    self._counts["crashed"] += 1
                raise ToolProcessError(
                    worker.target, f"its worker process died during the call ({_exit(code)})"
                )
            data += chunk
        return bytes(data)

    # -- workers -------------------------------------------------------------------------------

    async def _acquire(self, target: str, stage: list[str]) -> _Worker:
        """An idle worker of ``target``, or a new one; waits while all are busy."""
        while True:
            with self._lock:
                found, stale, waiter = self._claim(target)
            for worker in stale:
                _stop(worker)
            if found is not None:
                return found
            if waiter is None:
                stage[0] = "its worker process was still starting; it is kept for the next call"
                break  # a slot is ours: start a worker in it
            try:
                await waiter
            except asyncio.CancelledError:
                with self._lock, contextlib.suppress(ValueError):
                    self._waiters.remove((asyncio.get_running_loop(), waiter))
                self._wake_one()  # a wake-up meant for this waiter goes to the next
                raise
        starting = asyncio.ensure_future(self._boot(target))
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The start goes on in its own task: the new worker waits for the next call
            # (or is stopped, if the loop closes first and cancels that task too).
            starting.add_done_callback(self._adopt)
            raise
        except BaseException:
            with self._lock:
                self._busy -= 1
            self._wake_one()
            raise

    def _claim(
        self, target: str
    ) -> tuple[_Worker | None, list[_Worker], asyncio.Future[None] | None]:
        """(lock held) An idle worker of ``target``, or a free slot (``None, ..., None``),
        or a future to wait on; and the idle workers to stop (dead, or evicted)."""
        stale = [w for w in self._idle if w.process.poll() is not None]
        for worker in stale:
            self._idle.remove(worker)
        mine = next((w for w in self._idle if w.target == target), None)
        if mine is not None:
            self._idle.remove(mine)
        elif self._busy + len(self._idle) >= self.max_processes and self._idle:
            stale.append(self._idle.popleft())  # another tool's idle worker makes room
        if mine is None and self._busy + len(self._idle) >= self.max_processes:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
            return None, stale, waiter
        self._busy += 1
        self._counts["calls"] += 1
        return mine, stale, None

    def _adopt(self, starting: asyncio.Future[_Worker]) -> None:
        """Park a worker whose caller gave up while it started."""
        if starting.cancelled() or starting.exception() is not None:
            with self._lock:
                self._busy -= 1
            self._wake_one()
            return
        self._park(starting.result())

    async def _boot(self, target: str) -> _Worker:
        """A new worker for ``target``, once it has imported the tool and said so."""
        worker = await run_blocking(self._start, target)
        try:
            async with asyncio.timeout(_BOOT_SECONDS):
                hello = await self._frame(worker)
        except TimeoutError:
            _stop(worker)
            raise ToolProcessError(
                target, f"its worker process did not start within {_BOOT_SECONDS:g} s"
            ) from None
        except BaseException:
            _stop(worker)
            raise
        if hello.get("ready") is not True:
            _stop(worker)
            error = hello.get("error")
            raise ToolProcessError(target, str(error) if error else "its worker did not start")
        return worker

    def _start(self, target: str) -> _Worker:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        # What this process can import, the worker can: the same sys.path, in order.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(child.fileno()), target],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # its own process group: one kill takes it all
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        with self._lock:
            self._counts["started"] += 1
        return _Worker(process, parent, target)

    async def _release(self, worker: _Worker, keep: bool) -> None:
        if keep:
            self._park(worker)
            return
        with self._lock:
            self._busy -= 1
        await self._kill(worker, count=True)
        self._wake_one()

    def _park(self, worker: _Worker) -> None:
        """Keep a busy worker for its tool's next call, or stop it when there are enough."""
        with self._lock:
            self._busy -= 1
            keep = worker.process.poll() is None and len(self._idle) < self.max_idle
            if keep:
                self._idle.append(worker)
        if not keep:
            _stop(worker)
        self._wake_one()

    async def _kill(self, worker: _Worker, *, count: bool) -> None:
        """Kill and reap ``worker`` and what it started (its call, if any, is abandoned)."""
        worker.sock.close()
        if _kill_group(worker.process) and count:
            with self._lock:
                self._counts["killed"] += 1
        # Reaped on the runtime's pool: wait() blocks, briefly, until the kernel is done.
        await asyncio.shield(run_blocking(_reap, worker.process))

    def _wake_one(self) -> None:
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                with contextlib.suppress(RuntimeError):  # its loop is closed: skip it
                    loop.call_soon_threadsafe(_set_if_pending, waiter)
                    return

    # -- observing and closing -----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts: workers alive (busy, idle), calls, started, killed, crashed."""
        with self._lock:
            return {
                "max_processes": self.max_processes,
                "processes": self._busy + len(self._idle),
                "busy": self._busy,
                "idle": len(self._idle),
                "waiting": len(self._waiters),
                **self._counts,
            }

    def close(self) -> None:
        """Kill the idle workers (busy ones are killed as their calls end or time out)."""
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for worker in idle:
            worker.sock.close()
            _kill_group(worker.process)
            _reap(worker.process)


def _stop(worker: _Worker) -> None:
    """Kill ``worker`` now; it is reaped on the runtime's pool."""
    worker.sock.close()
    _kill_group(worker.process)
    blocking_executor().submit(_reap, worker.process)


def _set_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _kill_group(process: subprocess.Popen[bytes]) -> bool:
    """SIGKILL the worker's process group; whether the worker was not yet reaped."""
    running = process.returncode is None  # no poll(): reaping first could free the group id
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)  # the group outlives its leader's exit
    return running


def _reap(process: subprocess.Popen[bytes]) -> int | None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5.0)
    return process.returncode


def _exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# -- the worker process ---------------------------------------------------------------------------


def _worker_main(fd: str, target: str) -> None:
    """Import ``target``, say so, then answer its calls read from the socket ``fd`` until
    the parent closes it."""
    _die_with_parent()
    sock = socket.socket(fileno=int(fd))
    sock.setblocking(True)
    try:
        fn_tool = _load(target)
    except Exception as err:
        _send(sock, {"ready": False, "error": str(err)})
        return
    _send(sock, {"ready": True})
    while True:
        header = _recv_exactly(sock, _HEADER.size)
        if header is None:
            return
        body = _recv_exactly(sock, _HEADER.unpack(header)[0])
        if body is None:
            return
        _send(sock, _answer(body, target, fn_tool))


def _send(sock: socket.socket, frame: dict[str, Any]) -> None:
    try:
        data = json.dumps(frame, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as err:
        failed = {"ok": False, "error": f"the result is not JSON: {err}", "id": frame.get("id")}
        data = json.dumps(failed).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _answer(body: bytes, target: str, fn_tool: Any) -> dict[str, Any]:
    try:
        request = json.loads(body)
    except ValueError as err:
        return {"ok": False, "error": f"unreadable request: {err}", "id": None}
    if not isinstance(request, dict):
        return {"ok": False, "error": "the request is not an object", "id": None}
    reply = _call(request, target, fn_tool)
    reply["id"] = request.get("id")
    return reply


def _call(request: dict[str, Any], target: str, fn_tool: Any) -> dict[str, Any]:
    if request.get("target") != target:
        return {"ok": False, "error": f"this worker runs {target} only"}
    try:
        model = fn_tool.arguments_model
        validated = model.model_validate(request.get("arguments"))
        value = fn_tool.func(**{name: getattr(validated, name) for name in model.model_fields})
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
        return {"ok": True, "value": jsonable(value)}
    except Exception as err:
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}


async def _awaited(value: Any) -> Any:
    return await value


def _load(target: str) -> Any:
    """The :class:`~llmagentos.tools.base.FunctionTool` that ``target`` names (a plain
    function is wrapped)."""
    from llmagentos.tools.base import FunctionTool

    found = _resolve(target)
    return found if isinstance(found, FunctionTool) else FunctionTool(found)


def _resolve(target: str) -> Any:
    module_name, _, qualname = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as err:
        raise LookupError(
            f"cannot import the tool {target} in a worker process ({type(err).__name__}: {err})"
        ) from None
    return found


def _die_with_parent() -> None:
    """On Linux, ask for SIGKILL when the parent goes (a worker hung in a tool would
    otherwise outlive it; an idle one exits anyway, on its socket's end)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent went before the request was made
        os._exit(0)
