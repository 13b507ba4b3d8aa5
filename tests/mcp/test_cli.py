"""``llmagentos mcp tools`` and ``mcp serve``: tables, and one error line on bad input."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmagentos.cli.main import main
from tests.mcp.conftest import OUR_TOOLS, SDK_SERVER, SERVERS, free_port

pytestmark = pytest.mark.timeout(60)


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def invoke(*args: str) -> Outcome:
        code = main(list(args))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return invoke


def test_tools_of_a_stdio_server(cli: Any) -> None:
    result = cli("mcp", "tools", "--", sys.executable, str(SDK_SERVER))
    assert result.code == 0, result.err
    assert "sdk-fixture" in result.out
    for name in ("add", "describe", "refuse", "nap"):
        assert name in result.out
    assert "a*: integer" in result.out


def test_tools_of_an_http_server(cli: Any, our_http_url: str) -> None:
    result = cli("mcp", "tools", "--url", our_http_url, "-H", "X-Test: yes")
    assert result.code == 0, result.err
    assert "llmagentos" in result.out and "text.upper" in result.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mcp", "tools"], "give either a server command (after --) or --url"),
        (["mcp", "tools", "--url", "http://127.0.0.1:9/mcp", "--", "x"], "not both"),
        (["mcp", "tools", "--url", "http://x/mcp", "-H", "novalue"], "must be 'Name: value'"),
        (["mcp", "tools", "--env", "NOEQUALS", "--", "x"], "must be KEY=VALUE"),
        (["mcp", "tools", "--", "no-such-mcp-server-command"], "cannot connect"),
        (["mcp", "serve", "--tools", "no_such_module_xyz:registry"], "cannot import"),
        (["mcp", "serve", "--tools", "json"], "must be MODULE:ATTR"),
        (["mcp", "serve", "--tools", "json:nothing_here"], "has no attribute 'nothing_here'"),
        (["mcp", "serve", "--tools", "json:dumps.__name__"], "is a str, not a ToolRegistry"),
        (["mcp", "serve", "--tools", f"{SERVERS / 'missing.py'}:registry"], "no such file"),
    ],
)
def test_bad_input_is_one_error_line(cli: Any, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.code == 2, result
    lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.err


def test_unreachable_url_is_one_error_line(cli: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    result = cli("mcp", "tools", "--url", url, "--timeout", "10")
    assert result.code == 2
    assert result.err.startswith(f"error: MCP server {url}: cannot connect")


def test_serve_refuses_a_taken_port(cli: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("mcp", "serve", "--tools", OUR_TOOLS, "--transport", "http", "--port", port)
    assert result.code == 2
    assert result.err.startswith(f"error: cannot listen on 127.0.0.1:{port}")


def test_serve_accepts_a_single_tool_and_a_list(tmp_path: Path) -> None:
    from llmagentos.cli.mcp import load_tools

    module = tmp_path / "some_tools.py"
    module.write_text(
        "from llmagentos.tools import tool\n"
        "@tool\n"
        "def one(x: int) -> int:\n"
        "    return x\n"
        "def two(y: str) -> str:\n"
        "    return y\n"
        "both = [one, two]\n",
        encoding="utf-8",
    )
    assert load_tools(f"{module}:one").names() == ["one"]
    assert load_tools(f"{module}:both").names() == ["one", "two"]
