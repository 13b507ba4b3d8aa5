"""A real ``redis-server`` on loopback for the tests that share state through Redis
(registered as a plugin in ``tests/conftest.py``)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from llmagentos._processes import free_port

REDIS_SERVER = shutil.which("redis-server")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False  # not listening yet


@contextlib.contextmanager
def running_redis() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A fresh redis-server on a free port: its process (to kill) and its URL."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/install-redis.sh installs it)")
    port = free_port()
    options = ["--bind", "127.0.0.1", "--appendonly", "no", "--daemonize", "no"]
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--save", "", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port} (exit {proc.poll()})")
            time.sleep(0.02)
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with running_redis() as (_, url):
        yield url
