"""Past its slots a real gateway leaves requests unread, over raw TCP: each is served if
a slot frees within ``queue_timeout``, else answered 503 with ``Retry-After``; probes
are read at once; a client that goes away, a head too large, a shutdown lose nothing."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from llmagentos._processes import start_server, stop_processes

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

QUEUE_TIMEOUT = 0.4
T = TypeVar("T")


def _gateway(tmp: Path, echo: str) -> tuple[subprocess.Popen[bytes], str]:
    config = tmp / "gw.toml"
    config.write_text(
        f"[gateway]\nmax_in_flight = 2\nqueue_timeout = {QUEUE_TIMEOUT}\nretry_after = 3\n\n"
        f'[[services]]\nname = "up"\nreplicas = ["{echo}"]\n'
    )
    return start_server(["llmagentos", "gateway", str(config), "--access-log", "off"])


@pytest.fixture(scope="module")
def gateway(echo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = _gateway(tmp_path_factory.mktemp("unread"), echo)
    yield url
    stop_processes(process)


async def _call(url: str, target: str, extra: bytes = b"") -> tuple[int, bytes, float]:
    """One request over its own connection (closed after): status, raw reply, seconds."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode() + extra + b"\r\n"
    )
    await writer.drain()
    try:
        reply = await reader.read()
    except ConnectionResetError:  # refused and closed with bytes of ours still unread
        reply = b""
    writer.close()
    status = int(reply.split(b" ", 2)[1]) if reply else 0
    return status, reply, time.monotonic() - started


async def _while_full(url: str, hold: float, work: Awaitable[T]) -> T:
    """``work``'s result, run while two slow requests hold both slots (and are served)."""
    busy = [asyncio.ensure_future(_call(url, f"/up/slow?s={hold}")) for _ in range(2)]
    await asyncio.sleep(0.2)
    result = await work
    assert [status for status, _, _ in await asyncio.gather(*busy)] == [200, 200]
    return result


def test_past_the_slots_a_request_waits_unread_then_is_refused_with_retry_after(
    gateway: str,
) -> None:
    async def flood() -> list[tuple[int, bytes, float]]:
        return list(await asyncio.gather(*(_call(gateway, "/up/echo") for _ in range(6))))

    async def flood_and_count() -> tuple[list[tuple[int, bytes, float]], float]:
        waiting = asyncio.ensure_future(flood())
        await asyncio.sleep(0.1)
        status, reply, _ = await _call(gateway, "/metrics")
        assert status == 200
        count = re.search(rb"^llmagentos_gateway_unread (\S+)$", reply, re.M)
        assert count is not None
        return await waiting, float(count.group(1))

    refused, unread = asyncio.run(_while_full(gateway, 2.0, flood_and_count()))
    assert unread == 6  # the metric sees them waiting
    for status, reply, seconds in refused:
        assert status == 503 and b"retry-after: 3" in reply.lower()
        assert b"overloaded" in reply and b"could read within 400 ms" in reply
        assert QUEUE_TIMEOUT - 0.05 <= seconds < QUEUE_TIMEOUT + 0.8  # at its deadline


def test_a_request_left_unread_is_served_when_a_slot_frees_in_time(gateway: str) -> None:
    async def waits() -> tuple[int, bytes, float]:
        return await _call(gateway, "/up/echo")

    status, reply, seconds = asyncio.run(_while_full(gateway, 0.3, waits()))
    assert status == 200, reply
    assert 0.05 < seconds < QUEUE_TIMEOUT  # it waited for the slot, not for its refusal


def test_probes_are_read_at_once_while_requests_wait_unread(gateway: str) -> None:
    async def probes_beside_a_flood() -> list[tuple[int, bytes, float]]:
        flood = [asyncio.ensure_future(_call(gateway, "/up/echo")) for _ in range(4)]
        await asyncio.sleep(0.05)
        probes = [await _call(gateway, path) for path in ("/healthz", "/readyz", "/healthz?x=1")]
        await asyncio.gather(*flood)
        return probes

    probes = asyncio.run(_while_full(gateway, 1.0, probes_beside_a_flood()))
    for status, reply, seconds in probes:
        assert status == 200, reply
        assert seconds < 0.2  # not left waiting with the flood


def test_clients_that_leave_while_unread_or_send_a_huge_head_cost_nothing(gateway: str) -> None:
    async def leave_and_overflow() -> tuple[int, bytes, float]:
        host, port = gateway.removeprefix("http://").split(":")
        for _ in range(20):  # unread, then gone
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /up/echo HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            writer.close()
        huge = b"x-pad: " + b"a" * 200_000 + b"\r\n"
        return await _call(gateway, "/up/echo", huge)

    status, _, _ = asyncio.run(_while_full(gateway, 1.0, leave_and_overflow()))
    assert status in (0, 431, 503)  # refused (for its head, or its wait), or reset
    after = asyncio.run(_call(gateway, "/up/echo"))
    assert after[0] == 200  # nothing left behind holds a slot or the queue


def test_a_gateway_stopping_answers_the_requests_it_left_unread(echo: str, tmp_path: Path) -> None:
    process, url = _gateway(tmp_path, echo)
    try:

        async def stop_while_waiting() -> list[tuple[int, bytes, float]]:
            waiting = [asyncio.ensure_future(_call(url, "/up/echo")) for _ in range(3)]
            await asyncio.sleep(0.1)
            os.kill(process.pid, signal.SIGTERM)
            return list(await asyncio.gather(*waiting))

        answered = asyncio.run(_while_full(url, 0.6, stop_while_waiting()))
        statuses = [status for status, _, _ in answered]
        assert statuses == [503, 503, 503]  # told to come back, not cut off
    finally:
        stop_processes(process)


def test_websocket_upgrades_do_not_use_up_the_room_to_read(gateway: str) -> None:
    # An upgrade goes to another protocol and never reaches the shedder: counted as
    # a request on its way to a slot for good, a few of them would leave every later
    # request unread until refused.
    async def upgrades_then_one() -> tuple[int, bytes, float]:
        upgrade = (
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        )
        host, port = gateway.removeprefix("http://").split(":")
        for _ in range(6):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /up/echo HTTP/1.1\r\nHost: x\r\n" + upgrade + b"\r\n")
            await writer.drain()
            await reader.read(1024)  # refused: no WebSocket route
            writer.close()
        await asyncio.sleep(0.1)
        return await _call(gateway, "/up/echo")

    status, reply, seconds = asyncio.run(upgrades_then_one())
    assert status == 200, reply
    assert seconds < QUEUE_TIMEOUT
