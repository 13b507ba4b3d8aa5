"""Start a server process on a free loopback port and wait until it is ready.

Used by ``llmagentos up`` for the services and the gateway, and by the tests and
benchmarks that run them as real processes.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

from llmagentos.exceptions import DeployError

__all__ = ["free_port", "process_alive", "start_server", "wait_ready"]

_SRC = str(Path(__file__).resolve().parent.parent)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = 60.0,
    path: str = "/readyz",
    verify: str | bool = True,
) -> None:
    """Poll ``url + path`` until it answers 200 (``verify``: a CA file for https).

    Raises:
        DeployError: the process exited first, or ``timeout`` seconds passed.
    """
    trust = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise DeployError(f"{url}: the process exited with code {process.returncode}")
        try:
            if httpx.get(url + path, timeout=1.0, verify=trust).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)  # not listening yet
    raise DeployError(f"{url} was not ready within {timeout:g} s")


def start_server(
    args: Sequence[str],
    *,
    port_flag: str | None = "--port",
    env: Mapping[str, str] | None = None,
    output: IO[bytes] | int = subprocess.DEVNULL,
    timeout: float = 60.0,
    scheme: str = "http",
    verify: str | bool = True,
) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``python -m <args> [port_flag] PORT`` on a free port; return it once ready.

    The child finds this checkout's package first (``PYTHONPATH``). A server that does
    not become ready is killed before the error is raised.
    """
    port = free_port()
    command = [sys.executable, "-m", *args, *([port_flag] if port_flag else []), str(port)]
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (_SRC, environment.get("PYTHONPATH", "")) if p
    )
    process = subprocess.Popen(command, env=environment, stdout=output, stderr=output)
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_ready(url, process=process, timeout=timeout, verify=verify)
    except BaseException:
        process.kill()
        process.wait(timeout=15)
        raise
    return process, url


def stop_processes(*processes: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Ask each process still running to end (SIGTERM) and wait for it, in order."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=timeout)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie child of ours does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0
