"""Our client against our server: remote registry tools used through a local registry."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from llmagentos.llm.types import ToolCall
from llmagentos.mcp import HttpServer, MCPConnection, ServerParams
from llmagentos.tools.base import ToolRegistry, tool
from tests.mcp.conftest import our_stdio
from tests.mcp.servers import our_tools

pytestmark = pytest.mark.timeout(60)


@tool
def local_echo(text: str) -> str:
    """A local tool next to the remote ones."""
    return text


@pytest.fixture(scope="module", params=["stdio", "http"])
def remote(request: pytest.FixtureRequest) -> Iterator[ToolRegistry]:
    """A local registry holding a local tool and the served registry's tools as ``remote.*``."""
    server: ServerParams = (
        our_stdio()
        if request.param == "stdio"
        else HttpServer(request.getfixturevalue("our_http_url"))
    )
    registry = ToolRegistry([local_echo])
    with MCPConnection(server, namespace="remote", timeout=20) as connection:
        connection.register(registry)
        yield registry


async def test_registered_names_and_specs(remote: ToolRegistry) -> None:
    assert remote.names() == [
        "local_echo",
        "remote.add",
        "remote.greet",
        "remote.stats",
        "remote.explode",
        "remote.text_upper",  # the served "text.upper": a dot would read as a namespace
        "remote.pid",
        "remote.nap",
    ]
    spec = next(s for s in remote.specs(["remote"]) if s.name == "remote.add")
    assert spec.parameters == our_tools.add.parameters
    assert spec.description == our_tools.add.description


async def test_parallel_calls_equal_direct_calls(remote: ToolRegistry) -> None:
    cases = [
        ("remote.add", {"a": 20, "b": 22}, our_tools.add.func(20, 22)),
        ("remote.greet", {"name": "Bo"}, await our_tools.greet.func("Bo")),
        ("remote.stats", {"values": [2.0, 4.0]}, our_tools.stats.func([2.0, 4.0])),
        ("remote.text_upper", {"text": "mcp"}, our_tools.upper.func("mcp")),
        ("remote.nap", {"seconds": 0.2}, 0.2),
        ("remote.add", {"a": -1, "b": 1}, 0),
        ("local_echo", {"text": "here"}, "here"),
    ]
    calls = [
        ToolCall(id=f"c{i}", name=name, arguments=json.dumps(args))
        for i, (name, args, _) in enumerate(cases)
    ]
    results = await remote.run_calls(calls)
    assert [r.ok for r in results] == [True] * len(cases), [r.error for r in results]
    assert [r.value for r in results] == [expected for _, _, expected in cases]
    assert [r.name for r in results] == [name for name, _, _ in cases]


async def test_model_mistakes_become_error_results(remote: ToolRegistry) -> None:
    calls = [
        ToolCall(id="1", name="remote.ad", arguments='{"a": 1, "b": 2}'),
        ToolCall(id="2", name="remote.add", arguments='{"a": 1, "b": '),
        ToolCall(id="3", name="remote.add", arguments="[1, 2]"),
        ToolCall(id="4", name="remote.add", arguments='{"a": "one", "b": 2}'),
        ToolCall(id="5", name="remote.explode", arguments='{"message": "nope"}'),
        ToolCall(id="6", name="remote.add", arguments='{"a": 1, "b": 2}'),
    ]
    unknown, malformed, not_object, wrong_type, raised, fine = await remote.run_calls(calls)
    assert not unknown.ok
    assert (unknown.error or "").startswith("unknown tool 'remote.ad'; did you mean 'remote.add'")
    assert not malformed.ok and "malformed arguments" in (malformed.error or "")
    assert not not_object.ok and "must be a JSON object" in (not_object.error or "")
    assert not wrong_type.ok and (wrong_type.error or "").startswith("arguments invalid: a:")
    assert not raised.ok and raised.error == "ValueError: nope"
    assert fine.ok and fine.value == 3
    message = raised.to_message("5")
    assert message.role == "tool" and json.loads(message.content or "") == {
        "ok": False,
        "error": "ValueError: nope",
    }


async def test_registry_timeout_caps_a_remote_call(remote: ToolRegistry) -> None:
    slow, quick = await remote.run_calls(
        [
            ToolCall(id="1", name="remote.nap", arguments='{"seconds": 5}'),
            ToolCall(id="2", name="remote.add", arguments='{"a": 1, "b": 1}'),
        ],
        timeout=0.5,
    )
    assert not slow.ok and slow.error == "timed out after 0.5 s"
    assert quick.ok and quick.value == 2
