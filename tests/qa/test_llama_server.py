"""The QA agent against a real OpenAI-compatible peer: llama.cpp's server running SmolLM2.

The server is started on a free loopback port; when it is not ready within
``STARTUP_LIMIT`` seconds (two shared, busy cores) the test is skipped and says so.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from llmagentos.llm.local import smollm2_path
from llmagentos.llm.openai_compat import OpenAICompatModel
from llmagentos.llm.testing import allow_network_models
from llmagentos.qa import build_qa_agent
from llmagentos.qa.agent import ask

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")

pytestmark = pytest.mark.timeout(180)

STARTUP_LIMIT = 45.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
               "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", "2048", "--n_threads", "1", "--verbose", "False"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        give_up = time.monotonic() + STARTUP_LIMIT
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > give_up:
                pytest.skip(f"llama_cpp.server not ready within {STARTUP_LIMIT:g} s here")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_answers_through_an_openai_compatible_server(server_url: str, collection) -> None:
    memory, namespace = collection
    with allow_network_models():
        model = OpenAICompatModel("smollm2", base_url=server_url, model_id="llama-server:smollm2")
        agent = build_qa_agent(memory, namespace, model=model)
        answer = ask(agent, "How many cells does the TextMaze grid have?")
    planner = agent.planning_module
    assert planner.calls == 1 and planner.failures == 0  # the request went through
    assert answer.text is not None and "25" in answer.text, answer.reason
    assert [p.key for p in answer.citations] == ["maze.md#0"]
