"""The test runner that runs INSIDE the sandbox; shipped there as source text.

Usage (in the sandbox): ``python _llmagentos_tests.py SECONDS`` with stdin's first
line ``NONCE FD``. It imports ``test_solution`` (which imports ``solution``), runs each
module-level ``test*`` function with a SIGALRM time guard of SECONDS, and writes one
JSON message per line, each prefixed with NONCE, to descriptor FD (a pipe to the host,
so the candidate's own output can neither truncate nor interleave with it)::

    NONCE {"tests": ["test_a", "test_b"]}
    NONCE {"outcome": {"name": "test_a", "passed": true, "message": "", "seconds": 0.01}}
    NONCE {"done": true}          or          NONCE {"error": "SyntaxError: ..."}

The candidate's code runs in this same process, so it could find the nonce and the
descriptor and forge messages; the host cross-checks what it can (see
:mod:`llmagentos.sandbox.report`). Standard library only.
"""

import inspect
import json
import linecache
import os
import signal
import sys
import time
import traceback
from types import FrameType
from typing import Any

MESSAGE_CHARS = 600
TEST_FILE = "test_solution.py"
SOLUTION_FILE = "solution.py"


class TestTimeout(BaseException):
    """Raised by the SIGALRM guard; a BaseException so ``except Exception`` misses it."""


def on_alarm(signum: int, frame: FrameType | None) -> None:
    raise TestTimeout


def where(err: BaseException) -> str:
    """``file:line: source`` of the test's failing line and of the solution's, if any."""
    spots = []
    for frame in traceback.extract_tb(err.__traceback__):
        name = os.path.basename(frame.filename)
        if name in (TEST_FILE, SOLUTION_FILE):
            line = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
            spots.append((name, f"{name}:{frame.lineno} in {frame.name}: {line}"))
    tests = [text for name, text in spots if name == TEST_FILE]
    solutions = [text for name, text in spots if name == SOLUTION_FILE]
    chosen = tests[-1:] + solutions[-1:]
    return " | ".join(chosen)


def describe(err: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(err), err)).strip()
    spot = where(err)
    message = f"{text} (at {spot})" if spot else text
    return message[:MESSAGE_CHARS]


def main() -> None:
    nonce, fd = sys.stdin.readline().split()
    channel = os.fdopen(int(fd), "w", buffering=1, encoding="utf-8")
    seconds = float(sys.argv[1])
    dumps, write = json.dumps, channel.write  # kept before the candidate runs

    def emit(message: dict[str, Any]) -> None:
        write(nonce + " " + dumps(message) + "\n")
        channel.flush()

    sys.path.insert(0, os.getcwd())
    try:
        module = __import__(TEST_FILE[:-3])
    except BaseException as err:
        detail = "".join(traceback.format_exception(type(err), err, err.__traceback__)[-3:])
        emit({"error": f"importing the tests failed: {detail.strip()}"[:2000]})
        return
    tests = [
        (name, value)
        for name, value in vars(module).items()
        if name.startswith("test") and inspect.isfunction(value)
    ]
    emit({"tests": [name for name, _ in tests]})
    signal.signal(signal.SIGALRM, on_alarm)
    for name, function in tests:
        started = time.monotonic()
        passed, message = False, ""
        try:
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                function()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            passed = True
        except TestTimeout:
            message = f"timed out after {seconds:g} s"
        except BaseException as err:
            message = describe(err)
        took = round(time.monotonic() - started, 4)
        emit({"outcome": {"name": name, "passed": passed, "message": message, "seconds": took}})
    emit({"done": True})


if __name__ == "__main__":
    main()
