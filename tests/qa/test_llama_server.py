"""The QA agent against a real OpenAI-compatible peer: llama.cpp's server running SmolLM2.

The server is started on a free loopback port; when it is not ready within
``STARTUP_LIMIT`` seconds (two shared, busy cores) the test is skipped and says so.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmagentos.llm.openai_compat import OpenAICompatModel
from llmagentos.llm.testing import allow_network_models
from llmagentos.qa import build_qa_agent
from llmagentos.qa.agent import ask
from tests.llama_server import llama_server

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")

pytestmark = pytest.mark.timeout(180)

STARTUP_LIMIT = 45.0


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("llama_server")
    with llama_server(folder, startup_limit=STARTUP_LIMIT, when_slow="skip") as url:
        yield url


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
