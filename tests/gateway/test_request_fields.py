"""The proxy's cheap reads of a request give what Starlette's own give."""

from __future__ import annotations

import re

import pytest
from starlette.requests import Request

from llmagentos.gateway.request_fields import client_host, header, new_id

RAW = [(b"x-api-key", b"first"), (b"content-type", b"text/plain"), (b"x-api-key", b"second"),
       (b"x-odd", "caf\u00e9".encode("latin-1"))]  # fmt: skip


def _request(headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers,
                    "client": client, "query_string": b""})  # fmt: skip


@pytest.mark.parametrize("name", ["x-api-key", "X-API-Key", "content-type", "x-odd", "missing"])
def test_a_header_is_what_starlette_gives(name: str) -> None:
    request = _request(list(RAW), ("10.0.0.7", 5555))
    assert header(request, name) == request.headers.get(name)


def test_the_peer_is_what_starlette_gives() -> None:
    assert client_host(_request([], ("10.0.0.7", 5555))) == "10.0.0.7"
    assert client_host(_request([], None)) is None


def test_new_ids_are_hex_of_their_width_and_differ() -> None:
    ids = {new_id(64) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{16}", found) and int(found, 16) for found in ids)
    assert re.fullmatch(r"[0-9a-f]{32}", new_id(128))
