"""HTTP/1.1 by hand, for tests that must send a request exactly as written: clients
normalise paths (``..``), re-quote characters and fold header names, which would hide
what a real attacker sends."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    base_url: str,
    method: str,
    target: str,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> RawReply:
    """Send one request to ``base_url`` with ``target`` and ``headers`` byte for byte
    (latin-1), ``Content-Length`` added for a body; read one reply."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection((host, port), timeout=15) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        reply = http.client.HTTPResponse(sock)
        reply.begin()
        content = reply.read()
        return RawReply(reply.status, {k.lower(): v for k, v in reply.getheaders()}, content)
