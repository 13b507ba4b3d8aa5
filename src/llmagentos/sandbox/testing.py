"""The test runner that runs INSIDE the sandbox, out of the candidate's reach.

Usage (in the sandbox): ``python -I -S _llmagentos_tests.py SECONDS``; stdin holds the
line ``NONCE FD`` and then a JSON object: the task's ``tests`` source, their ``names``
(the module-level ``test*`` functions the host found in that source with ``ast``),
the extra ``modules`` (``.py`` files, by path), and the ``wire`` and ``worker`` sources.

The candidate never runs in this process. It runs in a child (``worker``) that
imports ``solution`` and answers requests over two pipes; here ``solution`` is a
proxy module whose functions call into that child, and whose values come back as
plain data (:mod:`~llmagentos.sandbox.wire`). The task's tests, their asserts and the
verdict stay here. This process is not dumpable (``PR_SET_DUMPABLE`` 0), so the
child, although of the same uid, cannot ptrace it, read its memory or reach its
descriptors through ``/proc``; it never inherits the report descriptor FD, and the
tests' source is never written where it could read it. Only the module-level
``test*`` functions defined in the task's test source are run (by name, from that
source, and only if the name still holds the function that source defined: a
``test_*`` of the solution, pulled in by ``from solution import *``, is not a test).
One JSON message per line, prefixed with NONCE, goes to FD::

    NONCE {"tests": ["test_a", "test_b"]}
    NONCE {"outcome": {"name": "test_a", "passed": true, "message": "", "seconds": 0.01}}
    NONCE {"done": true}          or          NONCE {"error": "SyntaxError: ..."}

A test that times out, or during which the child dies, fails; the child is then
started afresh for the next test. Standard library only.
"""

import builtins
import ctypes
import importlib.util
import json
import linecache
import os
import signal
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from importlib.machinery import ModuleSpec
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

MESSAGE_CHARS = 600
TEST_FILE = "test_solution.py"
PR_SET_DUMPABLE = 4
WORKER_FLAGS = ("-E", "-s", "-S", "-B", "-u", "-X", "utf8")


class TestTimeout(BaseException):
    """Raised by the SIGALRM guard; a BaseException so ``except Exception`` misses it."""


class SolutionGone(BaseException):
    """The candidate's process died or broke the protocol; a BaseException so a test's
    ``except Exception`` cannot take it for the solution's own error."""


class SolutionExit(BaseException):
    """The solution raised SystemExit, KeyboardInterrupt or the like."""


class SolutionError(Exception):
    """The solution raised an exception of a type this side does not know."""


def on_alarm(signum: int, frame: FrameType | None) -> None:
    raise TestTimeout


class Memory:
    """Serves the extra ``.py`` files given to the run from the copies we were sent,
    never from the working directory (the candidate can write there). A meta path
    finder and loader (not derived from ``importlib.abc``: its import is slow)."""

    def __init__(self, files: dict[str, str]) -> None:
        """``files``: ``.py`` sources by their relative path (``pkg/mod.py``)."""
        self.sources: dict[str, tuple[str, str]] = {}  # module -> (file name, source)
        self.packages: set[str] = set()
        for path, text in files.items():
            parts = path[:-3].split("/")
            if parts[-1] == "__init__":
                parts.pop()
                self.packages.add(".".join(parts))
            for i in range(1, len(parts)):
                self.packages.add(".".join(parts[:i]))
            if parts:
                self.sources[".".join(parts)] = (path, text)

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> ModuleSpec | None:
        if name not in self.sources and name not in self.packages:
            return None
        loader: Any = self  # a loader by protocol, not by inheritance
        return importlib.util.spec_from_loader(name, loader, is_package=name in self.packages)

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        filename, text = self.sources.get(module.__name__, ("<package>", ""))
        exec(compile(text, filename, "exec"), module.__dict__)


class Remote:
    """An object that lives in the candidate's process (a function, a class, an
    instance). Equality and order are asked of the candidate only between two of its
    own objects: compared with plain data, a Remote is never equal to it."""

    __slots__ = ("_base", "_conn", "_key", "_kind", "_type")

    def __init__(self, conn: "Solution", tag: list[Any]) -> None:
        set_ = object.__setattr__
        set_(self, "_conn", conn)
        set_(self, "_key", str(tag[1]))
        set_(self, "_kind", str(tag[2]) if len(tag) > 2 else "object")
        set_(self, "_type", str(tag[3]) if len(tag) > 3 else "object")
        set_(self, "_base", tag[4] if len(tag) > 4 else None)

    def _op(self, op: str, /, *args: Any) -> Any:
        return self._conn.request(op, [self, *args])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Lists, dicts and sets the solution may change in place come back changed.
        mutable = [i + 1 for i, a in enumerate(args) if type(a) in (list, dict, set)]
        return self._conn.request("call", [self, *args], kwargs, mutable)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._op("getattr", name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._op("setattr", name, value)

    def __len__(self) -> int:
        return _expect(self._op("len"), int, "len()")

    def __iter__(self) -> Iterator[Any]:
        iterator = self._op("iter")
        while True:
            try:
                yield self._conn.request("next", [iterator])
            except StopIteration:
                return

    def __next__(self) -> Any:
        return self._op("next")

    def __getitem__(self, key: Any) -> Any:
        return self._op("getitem", key)

    def __contains__(self, item: Any) -> bool:
        return _expect(self._op("contains", item), bool, "'in'")

    def __str__(self) -> str:
        return _expect(self._op("str"), str, "str()")

    def __repr__(self) -> str:
        return _expect(self._op("repr"), str, "repr()")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Remote):
            return False
        return bool(self._op("eq", other) is True)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Remote):
            return NotImplemented
        return _expect(self._op("lt", other), bool, "<")

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Remote):
            return NotImplemented
        return _expect(self._op("le", other), bool, "<=")

    def __hash__(self) -> int:
        return hash(self._key)


def _expect(value: Any, kind: type[T], what: str) -> T:
    if type(value) is not kind:
        raise TypeError(f"{what} of a solution object gave {type(value).__name__}, not {kind}")
    return value


class Solution:
    """The candidate's process and the requests we send it."""

    def __init__(self, worker_source: str) -> None:
        self.worker_source = worker_source
        self.process: subprocess.Popen[bytes] | None = None
        self.callbacks: dict[str, Callable[..., Any]] = {}
        self.exceptions: dict[str, type[BaseException]] = {}
        self.generation = 0
        self.names: list[str] = []
        self.import_error: dict[str, Any] | None = None
        self.to_child = self.from_child = -1

    def start(self) -> None:
        """Start the child and import the solution there (``import_error`` if not)."""
        self.stop()
        self.generation += 1
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, *WORKER_FLAGS, "-c", self.worker_source, str(down_r), str(up_w)],
            stdin=subprocess.DEVNULL,
            pass_fds=(down_r, up_w),
            close_fds=True,
        )
        os.close(down_r)
        os.close(up_w)
        self.to_child, self.from_child = down_w, up_r
        reply = self._receive()
        if "raise" in reply:
            self.import_error = reply["raise"]
            return
        self.import_error = None
        self.names = [str(n) for n in wire.decode(reply.get("ok"), self._resolve)]

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        for fd in (self.to_child, self.from_child):
            if fd >= 0:
                os.close(fd)
        self.to_child = self.from_child = -1

    def _receive(self) -> dict[str, Any]:
        try:
            message = wire.receive(self.from_child)
        except (wire.PeerGone, wire.WireError, OSError) as err:
            raise SolutionGone(self._gone(err)) from None
        if not isinstance(message, dict):
            raise SolutionGone("the solution's process broke the protocol")
        return message

    def _gone(self, err: BaseException) -> str:
        status = None
        if self.process is not None:
            try:
                status = self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                status = None
        if isinstance(err, wire.PeerGone):
            return f"the solution's process exited (status {status}) during the test"
        return f"the solution's process broke the protocol: {err}"

    def _other(self, value: Any) -> list[Any]:
        if isinstance(value, Remote):
            return ["h", value._key]
        if isinstance(value, types.ModuleType) and value is sys.modules.get("solution"):
            return ["m"]
        if callable(value):
            key = f"r{len(self.callbacks) + 1}"
            self.callbacks[key] = value
            return ["r", key]
        raise TypeError(f"a {type(value).__name__} cannot be passed to the solution")

    def _resolve(self, tag: list[Any]) -> Any:
        if tag[0] != "h" or len(tag) < 2:
            raise wire.WireError(f"unexpected reference {str(tag)[:60]}")
        return Remote(self, tag)

    def request(
        self,
        op: str,
        args: list[Any],
        kwargs: dict[str, Any] | None = None,
        sync: Sequence[int] = (),
    ) -> Any:
        """Ask the child to apply ``op`` to ``args``; its value, or its exception."""
        if self.process is None:
            raise SolutionGone("the solution's process is not running")
        kwargs = kwargs or {}
        request = {
            "op": op,
            "args": [wire.encode(a, self._other) for a in args],
            "kwargs": [[k, wire.encode(v, self._other)] for k, v in kwargs.items()],
            "sync": list(sync),
        }
        try:
            wire.send(self.to_child, request)
        except OSError:
            raise SolutionGone(self._gone(wire.PeerGone())) from None
        while True:
            reply = self._receive()
            if "callback" in reply:
                self._callback(reply)
                continue
            if "raise" in reply:
                raise self._exception(reply["raise"])
            try:
                value = wire.decode(reply.get("ok"), self._resolve)
                for index, state in reply.get("sync") or []:
                    _update(args[int(index)], wire.decode(state, self._resolve))
            except (wire.WireError, IndexError, TypeError, ValueError) as err:
                raise SolutionGone(f"the solution's process broke the protocol: {err}") from None
            return value

    def _callback(self, request: dict[str, Any]) -> None:
        function = self.callbacks.get(str(request.get("callback")))
        try:
            if function is None:
                raise SolutionGone("the solution called an unknown function of the test")
            args = [wire.decode(a, self._resolve) for a in request.get("args", [])]
            kwargs = {str(k): wire.decode(v, self._resolve) for k, v in request.get("kwargs", [])}
            reply: dict[str, Any] = {"ok": wire.encode(function(*args, **kwargs), self._other)}
        except (TestTimeout, SolutionGone):
            raise
        except Exception as err:
            reply = {"raise": {"message": f"{type(err).__name__}: {err}"[:2000]}}
        wire.send(self.to_child, reply)

    def exception_class(self, name: str, base: str) -> type[BaseException]:
        """The local stand-in of the solution's exception class ``name``."""
        if name not in self.exceptions:
            parent = getattr(builtins, base, None)
            if not (isinstance(parent, type) and issubclass(parent, Exception)):
                parent = SolutionError
            self.exceptions[name] = type(name, (parent,), {"__module__": "solution"})
        return self.exceptions[name]

    def _exception(self, info: Any) -> BaseException:
        if not isinstance(info, dict):
            return SolutionGone("the solution's process broke the protocol")
        name, base = str(info.get("type", "Exception")), str(info.get("base", "Exception"))
        message = str(info.get("message", ""))
        exported = info.get("exported")
        cls: type[BaseException]
        if isinstance(exported, str) and exported in self.exceptions:
            cls = self.exceptions[exported]
        else:
            builtin = getattr(builtins, base, None)
            if isinstance(builtin, type) and issubclass(builtin, Exception):
                cls = builtin
            elif isinstance(builtin, type) and issubclass(builtin, BaseException):
                cls = SolutionExit
                message = f"{name}: {message}"
            else:
                cls = SolutionError
                message = f"{name}: {message}"
        try:
            err = cls(message)
        except Exception:
            err = SolutionError(f"{name}: {message}")
        err.__dict__["solution_where"] = str(info.get("where", ""))[:300]
        err.__dict__["solution_type"] = name
        return err

    def module(self) -> types.ModuleType:
        """The ``solution`` module the tests import: a proxy of the child's."""
        module = types.ModuleType("solution")
        module.__all__ = list(self.names)  # type: ignore[attr-defined]
        module.__file__ = "solution.py"

        def attribute(name: str) -> Any:
            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name)
            try:
                value = self.request("getattr", [module, name])
            except AttributeError:
                raise AttributeError(f"module 'solution' has no attribute {name!r}") from None
            if isinstance(value, Remote):
                # By name, so it still works after the child is restarted.
                object.__setattr__(value, "_key", f"m:{name}")
                if value._kind == "class" and isinstance(value._base, str):
                    return self.exception_class(name, value._base)
            return value

        module.__getattr__ = attribute  # type: ignore[method-assign]
        return module


def _update(original: Any, state: Any) -> None:
    """Copy the child's final state of a mutable argument back into ours."""
    if type(original) is list and type(state) is list:
        original[:] = state
    elif type(original) in (dict, set) and type(original) is type(state):
        original.clear()
        original.update(state)


def where(err: BaseException) -> str:
    """``file:line: source`` of the test's failing line and of the solution's, if any."""
    spots = [
        f"{TEST_FILE}:{frame.lineno} in {frame.name}: {(frame.line or '').strip()}"
        for frame in traceback.extract_tb(err.__traceback__)
        if frame.filename == TEST_FILE
    ]
    chosen = spots[-1:]
    solution = err.__dict__.get("solution_where") if hasattr(err, "__dict__") else None
    if solution:
        chosen.append(str(solution))
    return " | ".join(chosen)


def describe(err: BaseException) -> str:
    name = err.__dict__.get("solution_type") if hasattr(err, "__dict__") else None
    text = "".join(traceback.format_exception_only(type(err), err)).strip()
    if name and not text.startswith(str(name)):
        text = f"{name}: {err}" if str(err) else str(name)
    spot = where(err)
    message = f"{text} (at {spot})" if spot else text
    return message[:MESSAGE_CHARS]


def _import_error(info: dict[str, Any]) -> str:
    detail = str(info.get("traceback") or f"{info.get('type')}: {info.get('message')}")
    lines = detail.strip().splitlines()
    return "importing the solution failed: " + "\n".join(lines[-3:])


def run_test(name: str, function: Any, solution: Solution, seconds: float) -> tuple[bool, str]:
    """Run one test under its time guard: ``(passed, message)``."""
    try:
        if not (
            isinstance(function, types.FunctionType) and function.__code__.co_filename == TEST_FILE
        ):
            raise SolutionGone(f"{name} is not the test's own function any more")
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            if solution.process is None:  # the last test killed it: a fresh one
                solution.start()
                if solution.import_error is not None:
                    raise SolutionGone(_import_error(solution.import_error))
            result = function()
            if isinstance(result, types.CoroutineType):  # an async test is run, not made
                import asyncio  # only then: its import costs more than a whole run

                asyncio.run(result)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except TestTimeout:
        solution.stop()
        return False, f"timed out after {seconds:g} s"
    except SolutionGone as err:
        solution.stop()
        return False, str(err)[:MESSAGE_CHARS]
    except BaseException as err:
        return False, describe(err)
    return True, ""


def load_tests(source: str) -> types.ModuleType:
    """The executed test module."""
    linecache.cache[TEST_FILE] = (len(source), None, source.splitlines(True), TEST_FILE)
    module = types.ModuleType("test_solution")
    module.__file__ = TEST_FILE
    sys.modules["test_solution"] = module
    exec(compile(source, TEST_FILE, "exec"), module.__dict__)
    return module


def main() -> None:
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # before the child exists
    nonce, fd = sys.stdin.readline().split()
    payload = json.loads(sys.stdin.read())
    channel = os.fdopen(int(fd), "w", buffering=1, encoding="utf-8")
    seconds = float(sys.argv[1])

    def emit(message: dict[str, Any]) -> None:
        channel.write(nonce + " " + json.dumps(message) + "\n")
        channel.flush()

    exec(compile(payload["wire"], "wire.py", "exec"), wire.__dict__)
    sys.meta_path.insert(0, Memory(dict(payload.get("modules") or {})))
    solution = Solution(payload["wire"] + "\n" + payload["worker"])
    try:
        solution.start()
    except SolutionGone as err:
        emit({"error": f"importing the solution failed: {err}"})
        return
    if solution.import_error is not None:
        emit({"error": _import_error(solution.import_error)[:2000]})
        return
    sys.modules["solution"] = solution.module()
    names = [str(name) for name in payload["names"]]  # found in the source by the host
    try:
        module = load_tests(str(payload["tests"]))
    except BaseException as err:
        detail = "".join(traceback.format_exception(type(err), err, err.__traceback__)[-3:])
        emit({"error": f"importing the tests failed: {detail.strip()}"[:2000]})
        return
    emit({"tests": names})
    signal.signal(signal.SIGALRM, on_alarm)
    for name in names:
        started = time.monotonic()
        passed, message = run_test(name, module.__dict__.get(name), solution, seconds)
        took = round(time.monotonic() - started, 4)
        emit({"outcome": {"name": name, "passed": passed, "message": message, "seconds": took}})
    solution.stop()
    emit({"done": True})


wire: Any = types.ModuleType("wire")  # filled with wire.py's source in main()

if __name__ == "__main__":
    main()
