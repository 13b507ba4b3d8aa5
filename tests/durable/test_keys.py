"""Idempotency keys are unique per run and agent, and a resumed run reuses its own.

A real loopback HTTP server records the ``Idempotency-Key`` header of every POST that
durable workers (real processes) send through the ``web.fetch`` tool. Before, every
run's first POST carried ``0.tool.0``, so a server that drops repeats would have
dropped a second run's first call as a repeat of the first run's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmagentos.durable import StepScope, call_key
from llmagentos.durable.scope import calling, scope_active

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fetch_agent.py")
HEADER_VALUE = re.compile(r"^[\x21-\x7e]{1,128}$")  # visible ASCII: a valid header value


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.keys: list[str | None] = []
        self.hold_first = threading.Event()  # set: the first POST waits for `release`
        self.release = threading.Event()
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        with self.server.lock:
            self.server.keys.append(self.headers.get("idempotency-key"))
            first = len(self.server.keys) == 1
        if first and self.server.hold_first.is_set():
            self.server.release.wait(60)  # the worker is killed while we hold its call
        try:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def _worker(journal: Path, url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    args = [sys.executable, str(WORKER), str(journal), url, "3"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(worker: subprocess.Popen[bytes]) -> None:
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err.decode()


def test_two_runs_never_share_a_key_and_a_resumed_run_reuses_its_own(tmp_path, recorder):
    url = f"http://127.0.0.1:{recorder.server_address[1]}/orders"
    recorder.hold_first.set()
    first = _worker(tmp_path / "a.db", url)
    deadline = time.monotonic() + 60
    while not recorder.keys and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.02)
    assert recorder.keys, "the first POST never arrived"
    # Killed while its first POST is in flight: the call is started, not done.
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    recorder.hold_first.clear()
    recorder.release.set()
    killed_key = recorder.keys[0]

    _finish(_worker(tmp_path / "a.db", url))  # the resume sends that call again...
    run_a = list(recorder.keys)
    assert run_a[1] == killed_key  # ...with the same key, so the server can drop it
    _finish(_worker(tmp_path / "b.db", url))  # another run of the same agent and config
    run_b = recorder.keys[len(run_a) :]

    assert all(key is not None and HEADER_VALUE.match(key) for key in recorder.keys)
    assert run_b and not set(run_b) & set(run_a), (run_a, run_b)
    assert len(set(run_a)) == len(run_a) - 1  # only the resumed call repeats its key
    assert "poster" in killed_key  # the agent is part of the key


def test_keys_outside_a_journal_are_unique_too():
    # A gate or scope without a journal (no durable run) still never hands out a key
    # another scope gave: two processes' first calls would otherwise collide.
    one, two = StepScope(agent="a"), StepScope(agent="a")
    assert one.next_key("tool") != two.next_key("tool")
    with scope_active(one), calling(one.next_key("tool")):
        key = call_key()
    assert key is not None and HEADER_VALUE.match(key)
    odd = StepScope(agent="ünïcode agent/with slashes\r\nand: more " * 3)
    assert HEADER_VALUE.match(odd.next_key("tool"))
