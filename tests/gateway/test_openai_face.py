"""The gateway's OpenAI-compatible face, driven by the official ``openai`` client.

A real gateway process exposes the embedded SmolLM2 as a model and the text-maze LLM
agent as an agent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette", reason="needs llmagentos[serve]")
pytest.importorskip("llama_cpp", reason="needs llmagentos[local]")
openai = pytest.importorskip("openai", reason="needs the openai client (dev extra)")

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("face") / "gateway.toml"
    maze = ROOT / "examples" / "configs" / "text_maze_llm.toml"
    config.write_text(
        '[[models]]\nname = "smollm2"\nmodel = "local:smollm2"\n\n'
        f'[[agents]]\nname = "maze"\nconfig = "{maze}"\n\n'
        '[[embedders]]\nname = "minilm"\nembedder = "local:minilm"\n'
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "llmagentos", "gateway", str(config), "--port", str(port)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(process.stderr.read().decode() if process.stderr else "exited")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=15)


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_lists_the_models_agents_and_embedders(gateway: str) -> None:
    listed = _client(gateway).models.list()
    assert sorted(m.id for m in listed.data) == ["maze", "minilm", "smollm2"]


def test_a_model_answers_and_streams(gateway: str) -> None:
    client = _client(gateway)
    reply = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8, temperature=0,
    )  # fmt: skip
    text = reply.choices[0].message.content
    assert text and reply.usage is not None and reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8, temperature=0, stream=True,
    )  # fmt: skip
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len([p for p in pieces if p]) > 1  # it really streamed, piece by piece
    assert "".join(pieces) == text  # and said what the whole answer said


def test_an_agent_answers_with_its_decision(gateway: str) -> None:
    client = _client(gateway)
    reply = client.chat.completions.create(
        model="maze",
        messages=[{"role": "user", "content": "You are at (0, 0). The dock is east."}],
    )
    decision = json.loads(reply.choices[0].message.content or "")
    assert set(decision) == {"action", "reason"} and isinstance(decision["action"], int)
    stream = client.chat.completions.create(
        model="maze", messages=[{"role": "user", "content": "Walls north."}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert set(json.loads(text)) == {"action", "reason"}
    metrics = httpx.get(f"{gateway}/metrics").text  # the face is counted like any route
    assert 'route="/chat/completions",service="v1",status="200",upstream="-"' in metrics


def test_mistakes_are_4xx_in_openai_form(gateway: str) -> None:
    client = _client(gateway)
    with pytest.raises(openai.NotFoundError, match="unknown model 'gpt-9'"):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "x"}], temperature=5
        )
    raw = httpx.post(f"{gateway}/v1/chat/completions", content=b"{not json")
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    empty = httpx.post(f"{gateway}/v1/chat/completions", json={"model": "maze", "messages": []})
    assert empty.status_code == 400 and "messages" in empty.json()["error"]["message"]


def test_embeddings_through_the_official_client(gateway: str) -> None:
    import numpy as np

    from llmagentos.embeddings import make_embedder

    pytest.importorskip("onnxruntime", reason="needs the memory extra")
    texts = ["The cat sat on the mat.", "Stock markets fell sharply."]
    reply = _client(gateway).embeddings.create(model="minilm", input=texts)  # base64 on the wire
    got = np.array([d.embedding for d in reply.data], dtype=np.float32)
    want = make_embedder("local:minilm").embed(texts).vectors
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert [d.index for d in reply.data] == [0, 1] and reply.usage.prompt_tokens > 0
    floats = httpx.post(f"{gateway}/v1/embeddings", json={"model": "minilm", "input": texts[0],
                                                        "encoding_format": "float"})  # fmt: skip
    np.testing.assert_allclose(floats.json()["data"][0]["embedding"], want[0], atol=1e-5)
    models = {m.id: m.owned_by for m in _client(gateway).models.list().data}
    assert models["minilm"] == "llmagentos (embedder)"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "minilm", "input": [[1, 2, 3]]}, 400, "input"),
        ({"model": "minilm", "input": [""]}, 400, "input"),
        ({"model": "minilm", "input": "x", "dimensions": 7}, 400, "dimensions"),
        ({"model": "smollm2", "input": "x"}, 404, "model"),
        ({"model": "minilm"}, 400, "input"),
    ],
)
def test_bad_embedding_requests_are_4xx_naming_the_field(
    gateway: str, body: dict[str, object], status: int, param: str
) -> None:
    reply = httpx.post(f"{gateway}/v1/embeddings", json=body)
    assert reply.status_code == status, reply.text
    assert param in reply.json()["error"]["param"]


def test_chat_on_an_embedder_is_refused(gateway: str) -> None:
    body = {"model": "minilm", "messages": [{"role": "user", "content": "hi"}]}
    reply = httpx.post(f"{gateway}/v1/chat/completions", json=body)
    assert reply.status_code == 400 and "embedding model" in reply.json()["error"]["message"]
