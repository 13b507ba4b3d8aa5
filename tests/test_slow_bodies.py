"""A slow body holds a connection, not a slot: the load shedder reads a request's body
before admitting it, and answers 408 (closing the connection) when the body does not
arrive within ``body_timeout``.

The shedder on its own first, then real ``llmagentos serve`` and ``llmagentos gateway``
processes held by more slow-body sockets than they have slots, over raw connections.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos._processes import start_server, stop_processes
from llmagentos.exceptions import ConfigError
from llmagentos.load_shedding import BODY_IN, LoadShedder, Shedding, SheddingLimits

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

ROOT = Path(__file__).resolve().parents[1]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"
BODY_TIMEOUT = 1.5
SLOTS = 2

# -- the shedder on its own -------------------------------------------------------------


class _Client:
    """One request's ``receive``: the body's chunks, each after ``pause`` s, then (with
    ``stall``) nothing more, as a client that stopped sending."""

    def __init__(self, *chunks: bytes, pause: float = 0.0, stall: bool = False) -> None:
        self.chunks, self.pause, self.stall = list(chunks), pause, stall
        self.calls = 0

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        if self.chunks:
            await asyncio.sleep(self.pause)
            chunk = self.chunks.pop(0)
            more = bool(self.chunks) or self.stall
            return {"type": "http.request", "body": chunk, "more_body": more}
        await asyncio.sleep(3600)  # stalled: nothing more ever comes
        raise AssertionError("unreachable")


class _Shedder:
    """A shedder around an app that reads the whole body (413 past ``app_limit``, as the
    services do) and answers 200 with it; ``answers`` holds (status, body) of every call."""

    def __init__(self, limits: SheddingLimits, *, buffered: int = 1 << 20, app_limit: int = 64):
        self.shedding = Shedding(limits, max_body_bytes=buffered)
        self.answers: list[tuple[int, bytes]] = []
        self.running = 0

        async def app(scope: Any, receive: Any, send: Any) -> None:
            self.running += 1
            try:
                declared = dict(scope["headers"]).get(b"content-length", b"0")
                if int(declared) > app_limit:  # refused on its declared length, unread
                    await _answer(send, 413, b"too large")
                    return
                body = b""
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    if len(body) > app_limit:
                        await _answer(send, 413, b"too large")
                        return
                    if not message.get("more_body", False):
                        break
                await _answer(send, 200, body)
            finally:
                self.running -= 1

        self.shedder = LoadShedder(app, shedding=self.shedding)

    async def call(self, client: _Client, headers: list[tuple[bytes, bytes]]) -> None:
        started: list[int] = []
        parts: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.append(message["status"])
                names = dict(message["headers"])
                if message["status"] == 408:
                    assert names[b"connection"] == b"close"
            else:
                parts.append(message.get("body", b""))

        scope = {"type": "http", "path": "/x", "method": "POST", "headers": headers}
        await self.shedder(scope, client.receive, send)
        self.answers.append((started[0] if started else 0, b"".join(parts)))


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _length(size: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(size).encode())]


CHUNKED = [(b"transfer-encoding", b"chunked")]


async def test_a_slow_body_holds_no_slot_and_is_answered_408_at_its_deadline() -> None:
    shedder = _Shedder(SheddingLimits(max_in_flight=1, max_queue=0, body_timeout=0.3))
    started = time.monotonic()
    slow = [
        asyncio.ensure_future(shedder.call(_Client(b"{", stall=True), _length(10)))
        for _ in range(3)
    ]
    await asyncio.sleep(0.05)
    await shedder.call(_Client(b'{"a":', b" 1}", pause=0.01), _length(8))
    assert shedder.answers == [(200, b'{"a": 1}')]  # served while three bodies trickle
    await asyncio.gather(*slow)
    assert time.monotonic() - started >= 0.3
    assert [status for status, _ in shedder.answers[1:]] == [408] * 3
    refusal = json.loads(shedder.answers[1][1])
    assert refusal["field"] == "body" and "body_timeout (0.3 s)" in refusal["detail"]
    stats = shedder.shedding.stats()
    assert stats["body_timeouts"] == 3 and stats["in_flight"] == 0 and stats["shed"] == 0


async def test_a_request_without_a_body_is_not_read_ahead() -> None:
    shedder = _Shedder(SheddingLimits(body_timeout=0.3))
    client = _Client(b"")
    await shedder.call(client, [(b"host", b"x")])  # the app reads it itself
    assert shedder.answers == [(200, b"")] and client.calls == 1


async def test_a_body_its_server_marks_whole_goes_to_the_app_unread() -> None:
    """A body that came with its head (the servers' protocol sets ``BODY_IN``) is not
    read ahead: the app gets the client's own ``receive``; unmarked, a replay of it."""
    given: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        given.append(receive)
        message = await receive()
        await _answer(send, 200, message["body"])

    shedder = LoadShedder(app, shedding=Shedding(SheddingLimits(body_timeout=0.3)))
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/x", "method": "POST", "headers": _length(2)}
    marked = _Client(b"{}")
    await shedder({**scope, BODY_IN: True}, marked.receive, send)
    unmarked = _Client(b"{}")
    await shedder(dict(scope), unmarked.receive, send)
    assert given[0] == marked.receive and given[1] != unmarked.receive
    assert [m.get("body") for m in sent if m["type"] == "http.response.body"] == [b"{}"] * 2
    assert shedder.shedding.stats()["in_flight"] == 0


async def test_a_body_past_the_buffer_goes_to_the_app_which_refuses_it() -> None:
    # Not buffered whole: the app sees the read part, then the rest, and its own 413.
    shedder = _Shedder(SheddingLimits(body_timeout=5), buffered=16, app_limit=64)
    await shedder.call(_Client(*[b"x" * 10] * 20), CHUNKED)
    await shedder.call(_Client(b"x" * 10), _length(1000))  # declared past the buffer
    await shedder.call(_Client(*[b"y" * 10] * 3), CHUNKED)  # past the buffer, within the app's
    assert shedder.answers == [(413, b"too large"), (413, b"too large"), (200, b"y" * 30)]


async def test_a_body_past_the_buffer_is_still_bound_by_the_deadline() -> None:
    shedder = _Shedder(SheddingLimits(body_timeout=0.3), buffered=16, app_limit=1000)
    started = time.monotonic()
    await shedder.call(_Client(b"x" * 10, b"x" * 10, stall=True), _length(500))
    assert [status for status, _ in shedder.answers] == [408]
    assert 0.3 <= time.monotonic() - started < 2 and shedder.shedding.overall.in_flight == 0


async def test_a_client_gone_mid_body_is_not_answered_and_holds_nothing() -> None:
    shedder = _Shedder(SheddingLimits(body_timeout=5))

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    client = _Client()
    client.receive = gone  # type: ignore[method-assign]
    await shedder.call(client, _length(10))
    assert shedder.answers == [(0, b"")] and shedder.running == 0
    assert shedder.shedding.overall.in_flight == 0


def test_a_bad_body_timeout_names_its_field() -> None:
    with pytest.raises(ConfigError, match="body_timeout"):
        SheddingLimits(body_timeout=-1)
    with pytest.raises(ConfigError, match="max_body_bytes"):
        Shedding(SheddingLimits(), max_body_bytes=0)


# -- real processes ---------------------------------------------------------------------


Held = list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


async def _hold(port: int, target: str, count: int) -> Held:
    """``count`` connections that each send headers and 1 byte of a 10-byte body."""
    held: Held = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 10\r\n\r\n{".encode()
        )
        await writer.drain()
        held.append((reader, writer))
    return held


async def _starved(url: str, target: str, body: dict[str, Any]) -> list[bytes]:
    """With more slow-body sockets than slots held open, a normal client is served
    (and the probe answers); then what each slow socket is finally answered (read to
    the connection's end)."""
    port = int(url.rsplit(":", 1)[1])
    held = await _hold(port, target, SLOTS * 3)
    try:
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(2):
                reply = await client.post(f"{url}{target}", json=body)
                assert reply.status_code == 200, reply.text  # not 503: the slots are free
            assert (await client.get(f"{url}/healthz")).status_code == 200
        deadline = BODY_TIMEOUT + 5
        return [await asyncio.wait_for(reader.read(), deadline) for reader, _ in held]
    finally:
        for _, writer in held:
            writer.close()


def _check_408(answers: list[bytes]) -> None:
    for answer in answers:  # read() returned: the server closed the connection
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        assert b"connection: close" in head.lower()
        refusal = json.loads(payload)
        assert refusal["field"] == "body" and "body_timeout" in refusal["detail"]


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    pytest.importorskip("fastapi", reason="needs llmagentos[serve]")
    process, url = start_server(
        ["llmagentos", "serve", str(TAXI), "--max-in-flight", str(SLOTS), "--max-queue", "0",
         "--body-timeout", str(BODY_TIMEOUT), "--port"],
        port_flag=None,
    )  # fmt: skip
    yield url
    stop_processes(process)


def test_slow_bodies_do_not_starve_a_service_and_get_408(service: str) -> None:
    started = time.monotonic()
    body = {"session": "victim", "seed": 0}
    _check_408(asyncio.run(_starved(service, "/v1/agent/reset", body)))
    assert time.monotonic() - started < BODY_TIMEOUT + 4


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    echo, echo_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
    config = tmp_path_factory.mktemp("slow_bodies") / "gw.toml"
    config.write_text(
        f"[gateway]\nmax_body_bytes = 1000\nmax_in_flight = {SLOTS}\nmax_queue = 0\n"
        f"body_timeout = {BODY_TIMEOUT}\n\n"
        f'[[services]]\nname = "echo"\nreplicas = ["{echo_url}"]\n'
    )
    try:
        process, url = start_server(["llmagentos", "gateway", str(config)])
    except BaseException:
        stop_processes(echo)
        raise
    yield url
    stop_processes(process, echo)


def test_slow_bodies_do_not_starve_the_gateway_and_get_408(gateway: str) -> None:
    _check_408(asyncio.run(_starved(gateway, "/echo/echo", {"a": 1})))
    text = httpx.get(f"{gateway}/metrics", timeout=5).text
    assert f"llmagentos_gateway_body_timeouts_total {SLOTS * 3}.0" in text


def test_the_gateway_still_refuses_a_body_over_its_limit(gateway: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(30):
            yield b"x" * 100  # chunked: no declared length, 3000 bytes past 1000

    async def both() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            streamed = await client.post(f"{gateway}/echo/echo", content=chunks())
            declared = await client.post(f"{gateway}/echo/echo", content=b"x" * 2000)
            return streamed, declared

    streamed, declared = asyncio.run(both())
    assert streamed.status_code == 413 and declared.status_code == 413
    assert streamed.json()["field"] == "body"
