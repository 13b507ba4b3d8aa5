"""Process-isolated tools for test_isolation: module-level, so a worker can import them."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

from llmagentos.tools import tool


@tool(isolation="process", timeout=60)
def hang(pid_file: str, seconds: float = 3600.0, child: bool = False) -> int:
    """Write the worker's pid (and a child's) to pid_file, then sleep.

    Args:
        pid_file: where the pids go, one a line.
        seconds: how long to sleep.
        child: also start a child process that sleeps as long.
    """
    pids = [os.getpid()]
    if child:
        pids.append(subprocess.Popen(["sleep", str(int(seconds) + 1)]).pid)
    Path(pid_file).write_text("\n".join(map(str, pids)) + "\n")
    time.sleep(seconds)
    return os.getpid()


@tool(isolation="process")
def add(a: int, b: int) -> dict[str, int]:
    """Add two numbers; also says which process did it."""
    return {"sum": a + b, "pid": os.getpid()}


@tool(isolation="process")
async def add_async(a: int, b: int) -> int:
    """Add two numbers, asynchronously."""
    return a + b


@tool(isolation="process")
def exit_now(code: int = 3) -> None:
    """End the worker process at once, as a crashing extension would."""
    os._exit(code)


@tool(isolation="process")
def fail(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


@tool(isolation="process")
def unjsonable() -> object:
    """Return something that has no JSON form."""
    return object()


@tool(isolation="process")
def big(size: int) -> str:
    """A string of size characters."""
    return "x" * size


@tool(isolation="process")
def forge() -> str:
    """Write a reply of its own on the worker's socket before the real one."""
    fake = json.dumps({"ok": True, "value": "forged", "id": "0" * 32}).encode()
    os.write(int(sys.argv[1]), struct.pack("!I", len(fake)) + fake)
    return "real"
