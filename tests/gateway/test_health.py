"""Active health checks against a real HTTP server on loopback that flips 200/503."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from llmagentos.gateway import HealthChecker, Replica


@dataclass
class FlipServer:
    """A tiny HTTP/1.1 server answering ``/readyz`` with ``status``; counts its hits."""

    status: int = 200
    hits: list[str] = field(default_factory=list)
    url: str = ""

    active: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.active += 1
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                self.hits.append(request.split(b" ")[1].decode())
                body = b"ok" if self.status == 200 else b"not ready"
                reason = b"OK" if self.status == 200 else b"Service Unavailable"
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (self.status, reason, len(body), body)
                )
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.active -= 1


@pytest.fixture
async def server() -> AsyncIterator[FlipServer]:
    flip = FlipServer()
    srv = await asyncio.start_server(flip.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    flip.url = f"http://127.0.0.1:{port}"
    yield flip
    srv.close()
    async with asyncio.timeout(5):  # let handlers of cancelled checks finish their close
        while flip.active:
            await asyncio.sleep(0.01)
        await srv.wait_closed()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_thresholds_flip_health_both_ways(server: FlipServer) -> None:
    replica = Replica(server.url)
    checker = HealthChecker([replica], unhealthy_threshold=3, healthy_threshold=2, timeout=2)
    try:
        await checker.check_once()
        assert replica.healthy and server.hits == ["/readyz"]
        server.status = 503
        await checker.check_once()
        await checker.check_once()
        assert replica.healthy  # two failures: not yet
        await checker.check_once()
        assert not replica.healthy
        server.status = 200
        await checker.check_once()
        assert not replica.healthy  # one pass: not yet
        server.status = 503
        await checker.check_once()  # the streak breaks
        server.status = 200
        await checker.check_once()
        assert not replica.healthy
        await checker.check_once()
        assert replica.healthy
        assert len(server.hits) == 8
    finally:
        await checker.stop()


async def test_refused_connections_count_as_failures(server: FlipServer) -> None:
    good, dead = Replica(server.url), Replica(f"http://127.0.0.1:{closed_port()}")
    checker = HealthChecker([good, dead], unhealthy_threshold=1, timeout=2)
    try:
        await checker.check_once()
        assert good.healthy and not dead.healthy
    finally:
        await checker.stop()


async def test_a_slow_replica_fails_its_check_within_the_timeout() -> None:
    done = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 5)  # never answers in time
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    replica = Replica(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}")
    checker = HealthChecker([replica], unhealthy_threshold=1, timeout=0.2)
    try:
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(checker.check_once(), 3)
        assert not replica.healthy
        assert asyncio.get_running_loop().time() - started < 2
    finally:
        await checker.stop()
        done.set()
        await asyncio.wait_for(asyncio.gather(*handlers), 5)
        srv.close()


async def test_background_task_checks_the_current_replicas(server: FlipServer) -> None:
    replicas = [Replica(server.url)]
    checker = HealthChecker(
        lambda: replicas, path="healthz", interval=0.02, unhealthy_threshold=2, timeout=2
    )
    checker.start()
    checker.start()  # idempotent: still one task
    try:
        server.status = 503
        async with asyncio.timeout(5):
            while replicas[0].healthy:
                await asyncio.sleep(0.01)
        # A replica added at run time is checked too.
        replicas.append(Replica(server.url.replace("127.0.0.1", "localhost")))
        before = len(server.hits)
        async with asyncio.timeout(5):
            while len(server.hits) < before + 4:
                await asyncio.sleep(0.01)
        assert set(server.hits) == {"/healthz"}
        server.status = 200
        async with asyncio.timeout(5):
            while not all(r.healthy for r in replicas):  # needs 2 passes in a row each
                await asyncio.sleep(0.01)
    finally:
        await checker.stop()
    assert checker.checks >= 2
    stopped_at = len(server.hits)
    await asyncio.sleep(0.1)
    assert len(server.hits) == stopped_at  # no checks after stop


async def test_checks_again_after_stop_and_survives_bad_urls(server: FlipServer) -> None:
    good, bad = Replica(server.url), Replica("http://127.0.0.1:99999")
    checker = HealthChecker([good, bad], unhealthy_threshold=1, timeout=2)
    await checker.check_once()
    await checker.stop()
    server.status = 503
    await checker.check_once()  # a fresh client after stop()
    await checker.stop()
    assert not good.healthy and not bad.healthy
    assert len(server.hits) == 2
