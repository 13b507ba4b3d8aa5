"""llama-cpp-python's own OpenAI-compatible server, started on a free loopback port for
tests that need a real peer (chat completions, embeddings)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import httpx
import pytest

from llmagentos._processes import free_port


@contextmanager
def llama_server(
    log_dir: Path,
    *extra: str,
    startup_limit: float = 60.0,
    when_slow: Literal["fail", "skip"] = "fail",
) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` on SmolLM2 (plus ``extra`` flags) and yield its
    ``/v1`` URL once ``/v1/models`` answers; stop it afterwards. A server not ready
    within ``startup_limit`` seconds fails the test, or skips it (``when_slow``)."""
    from llmagentos.llm.local import smollm2_path

    port = free_port()
    log_path = log_dir / "llama_server.log"
    # llama_cpp.server itself, with the AMX workaround the embedded backend applies too.
    command = [sys.executable, "-m", "llmagentos.llm.llama_cpu", "--model", str(smollm2_path()),
               "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", "2048", "--n_threads", "1", "--verbose", "False", *extra]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_ready(process, url, log_path, startup_limit, when_slow)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_ready(
    process: subprocess.Popen[bytes], url: str, log_path: Path, limit: float, when_slow: str
) -> None:
    give_up = time.monotonic() + limit
    while time.monotonic() < give_up:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{url}/models", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    if when_slow == "skip":
        pytest.skip(f"llama_cpp.server not ready within {limit:g} s here")
    pytest.fail(f"llama_cpp.server not ready after {limit:g} s:\n{_tail(log_path)}")


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]
