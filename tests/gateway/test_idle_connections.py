"""Pooled connections to replicas that close idle ones: real gateway processes in front
of a real uvicorn replica with a 1 s keep-alive, and of a socket replica that closes a
connection under the second request on it.

A replica closes a keep-alive connection idle for its ``timeout_keep_alive`` without a
``Connection: close`` first; aiohttp kept idle connections for 15 s. What must hold:

- the gateway lets an idle connection go before the replica closes it
  (``upstream_idle_timeout``, under uvicorn's own 5 s by default);
- a pooled connection the replica has closed is never written to, even when the
  gateway's event loop was busy as the close arrived (a large JSON body being checked);
- a close that crosses the request on the wire sends the request again, once, on a new
  connection, only when it may run twice (an idempotent method, route or key): a POST
  without a key is a 502 and reached the replica once.
"""

from __future__ import annotations

import inspect
import json
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from io import BufferedIOBase
from pathlib import Path

import httpx
import pytest

from llmagentos._processes import start_server, stop_processes
from llmagentos.exceptions import ConfigError
from llmagentos.gateway.admission import AdmissionLimits, read_json_body
from llmagentos.gateway.config import load_gateway_config
from llmagentos.gateway.upstream import IDLE_TIMEOUT

pytest.importorskip("aiohttp", reason="needs llmagentos[gateway]")

KEEP_ALIVE = 1  # the replica's timeout_keep_alive (s; uvicorn takes whole seconds)


@pytest.fixture(scope="module")
def replica() -> Iterator[str]:
    """The test app under uvicorn itself, closing connections idle for ``KEEP_ALIVE`` s."""
    process, url = start_server([
        "uvicorn", "llmagentos.gateway.testing:app", "--timeout-keep-alive", str(KEEP_ALIVE),
        "--loop", "asyncio", "--log-level", "warning",
        "--no-proxy-headers",  # the peer is the gateway's connection, not X-Forwarded-For
    ])  # fmt: skip
    yield url
    stop_processes(process)


def _gateway(tmp: Path, replicas: list[str], settings: str) -> tuple[subprocess.Popen[bytes], str]:
    config = tmp / "gateway.toml"
    config.write_text(
        f"[gateway]\nhealth_interval = 0\nbreaker_failures = 1000\n{settings}\n\n"
        f'[[services]]\nname = "up"\nreplicas = {json.dumps(replicas)}\n'
        'idempotent_routes = ["/idem"]\n'
    )
    return start_server(["llmagentos", "gateway", str(config)])


def _reached(replica: str) -> int:
    return int(httpx.get(f"{replica}/calls").json()["requests"])


def test_the_default_idle_timeout_is_under_uvicorns_keep_alive() -> None:
    import uvicorn

    keep_alive = inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default
    assert 0 < IDLE_TIMEOUT < keep_alive


@pytest.mark.parametrize("value", ["-1", "true", '"4"', "inf", "nan"])
def test_a_bad_idle_timeout_fails_naming_it(tmp_path: Path, value: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"[gateway]\nupstream_idle_timeout = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_gateway_config(config)
    assert caught.value.field == "gateway.upstream_idle_timeout"


def test_an_idle_connection_is_let_go_before_the_replica_closes_it(
    replica: str, tmp_path: Path
) -> None:
    process, url = _gateway(tmp_path, [replica], "upstream_idle_timeout = 0.5")
    try:
        with httpx.Client(base_url=url, timeout=10) as client:

            def post() -> tuple[int, str]:
                reply = client.post("/up/inspect", content=b"x")
                return reply.status_code, reply.json().get("peer", "") if reply.is_success else ""

            before = _reached(replica)
            post()
            time.sleep(KEEP_ALIVE + 0.5)  # past the replica's keep-alive, then POSTs in a loop
            replies = [post() for _ in range(20)]
            assert [status for status, _ in replies] == [200] * 20
            peers = {peer for _, peer in replies}
            assert len(peers) == 1  # one connection, kept for each next request
            time.sleep(0.75)  # past the gateway's 0.5 s, not the replica's 1 s
            status, peer = post()
            assert status == 200 and peer not in peers  # a new connection
            # Gaps about the replica's keep-alive: the gateway has let the connection go.
            for gap in (0.97, 0.985, 1.0):
                time.sleep(gap)
                assert post()[0] == 200
            assert _reached(replica) - before == 25  # each request reached it once
    finally:
        stop_processes(process)


def _slow_json(seconds: float) -> tuple[bytes, float]:
    """A JSON body the gateway takes about ``seconds`` or more to check (its parse holds
    the event loop), sized on this machine; and how long it took here."""
    count = 20_000
    while True:
        body = json.dumps([{"k": i} for i in range(count)]).encode()
        started = time.perf_counter()
        read_json_body(
            body, content_type="application/json", content_encoding=None,
            limits=AdmissionLimits(),
        )  # fmt: skip
        took = time.perf_counter() - started
        if took >= seconds:
            return body, took
        count = int(count * max(1.5, 1.2 * seconds / max(took, 1e-3)))


def test_a_connection_the_replica_closed_is_never_written_to(replica: str, tmp_path: Path) -> None:
    # The gateway would keep the connection for 30 s; the replica closes it after 1 s,
    # while the gateway checks a large body: its loop reads that close only after it
    # has picked the connection for the body's request.
    process, url = _gateway(
        tmp_path, [replica], "upstream_idle_timeout = 30\nmax_body_bytes = 100_000_000"
    )
    body, took = _slow_json(0.5)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.post("/up/echo", content=b"x").status_code == 200
            time.sleep(KEEP_ALIVE + 0.5)  # the replica closed that one; now one in the pool
            before = _reached(replica)
            assert client.post("/up/echo", content=b"x").status_code == 200
            closes_at = time.monotonic() + KEEP_ALIVE
            time.sleep(max(0.0, closes_at - 0.3 * took - time.monotonic()))
            reply = client.post(
                "/up/status/200", content=body, headers={"content-type": "application/json"}
            )
            assert reply.status_code == 200, reply.text
            assert _reached(replica) - before == 2
    finally:
        stop_processes(process)


def _read_request(stream: BufferedIOBase) -> str | None:
    """One request's ``method path key`` (its body read and dropped); None at EOF."""
    line = stream.readline()
    if not line:
        return None
    fields: dict[str, str] = {}
    while (raw := stream.readline()) not in (b"\r\n", b""):
        name, _, value = raw.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    stream.read(int(fields.get("content-length", "0")))
    method, target, _ = line.decode("latin-1").split(" ", 2)
    return f"{method} {target} {fields.get('idempotency-key', '-')}"


class _ClosingReplica(socketserver.ThreadingTCPServer):
    """Answers the first request on each connection (keep-alive, no ``Connection:
    close``); reads the next one and closes the connection without answering, as a
    keep-alive timeout that fires as the request arrives does. ``/die`` is never
    answered, even first on a connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.StreamRequestHandler):
    server: _ClosingReplica

    def handle(self) -> None:
        first = _read_request(self.rfile)
        if first is None:
            return
        self.server.seen.append(first)
        if first.split()[1] == "/die":
            return
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
        )
        self.wfile.flush()
        second = _read_request(self.rfile)
        if second is not None:
            self.server.seen.append(second)  # read, then the connection closes unanswered


@pytest.fixture
def closing() -> Iterator[_ClosingReplica]:
    server = _ClosingReplica()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_close_under_a_request_resends_only_what_may_run_twice(
    closing: _ClosingReplica, tmp_path: Path
) -> None:
    process, url = _gateway(tmp_path, [closing.url], "upstream_idle_timeout = 30")
    try:
        with httpx.Client(base_url=url, timeout=10) as client:

            def call(method: str, path: str, key: str | None = None) -> tuple[int, int]:
                """The status, and how many times the replica read this request."""
                headers = {} if key is None else {"idempotency-key": key}
                status = client.request(method, "/up" + path, content=b"{}", headers=headers)
                return status.status_code, closing.seen.count(f"{method} {path} {key or '-'}")

            assert call("POST", "/warm", "w")[0] == 200
            time.sleep(0.5)  # the gateway's own fetch of /openapi.json is over
            # Each goes out on a pooled connection that answered once, closed under it:
            assert call("POST", "/work", "k1") == (200, 2)  # a key: again on a new one
            assert call("POST", "/idem") == (200, 2)  # an idempotent route: the same
            assert call("POST", "/work") == (502, 1)  # may have run: never sent twice
            assert call("GET", "/work")[0] == 200  # aiohttp's own retry, on a new one
            # Closed on the new connection too: once more only, then the 502.
            assert call("POST", "/die", "k2") == (502, 2)
    finally:
        stop_processes(process)


def test_with_no_idle_time_no_connection_is_reused(replica: str, tmp_path: Path) -> None:
    process, url = _gateway(tmp_path, [replica], "upstream_idle_timeout = 0")
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            peers = {client.post("/up/inspect", content=b"x").json()["peer"] for _ in range(3)}
        assert len(peers) == 3
    finally:
        stop_processes(process)
