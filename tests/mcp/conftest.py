"""Real MCP peers for the tests: server processes over stdio and HTTP, on 127.0.0.1 only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the mcp extra is not installed")

from llmagentos.mcp import StdioServer

REPO = Path(__file__).resolve().parents[2]
SERVERS = Path(__file__).resolve().parent / "servers"
SDK_SERVER = SERVERS / "sdk_server.py"
OUR_TOOLS = f"{SERVERS / 'our_tools.py'}:registry"
INSTALL_SCRIPT = REPO / "scripts" / "install-mcp-test-servers.sh"
EVERYTHING_DIR = Path(os.environ.get("MCP_TEST_SERVERS_DIR", REPO / ".cache" / "mcp-servers"))
EVERYTHING_JS = (
    EVERYTHING_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist"
)
STARTUP_SECONDS = 30.0


def sdk_stdio() -> StdioServer:
    """The SDK's MCPServer fixture, as a stdio subprocess."""
    return StdioServer(sys.executable, (str(SDK_SERVER),))


def our_stdio() -> StdioServer:
    """``llmagentos mcp serve`` on the test registry, as a stdio subprocess."""
    return StdioServer(sys.executable, ("-m", "llmagentos", "mcp", "serve", "--tools", OUR_TOOLS))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def http_process(argv: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process, wait until its port answers, and kill it afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"server not listening after {STARTUP_SECONDS} s")
                time.sleep(0.05)
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def sdk_http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The SDK's MCPServer fixture over streamable HTTP."""
    port = free_port()
    log = tmp_path_factory.mktemp("sdk-http") / "server.log"
    with http_process([sys.executable, str(SDK_SERVER), "http", str(port)], port, log):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def our_http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``llmagentos mcp serve --transport http`` on the test registry."""
    port = free_port()
    log = tmp_path_factory.mktemp("our-http") / "server.log"
    argv = [sys.executable, "-m", "llmagentos", "mcp", "serve", "--tools", OUR_TOOLS]
    argv += ["--transport", "http", "--port", str(port)]
    with http_process(argv, port, log):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="session")
def everything() -> StdioServer:
    """The npm reference server ``server-everything``, installed on first use."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the npm MCP reference server")
    entry = EVERYTHING_JS / "index.js"
    if not entry.is_file():
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, timeout=300)
    assert entry.is_file(), f"{INSTALL_SCRIPT} did not install {entry}"
    return StdioServer("node", (str(entry), "stdio"))
