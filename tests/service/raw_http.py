"""Raw HTTP to a real service process: the target goes out byte for byte (``http.client``
neither normalises dot segments nor re-encodes), signed the way the gateway signs it."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from llmagentos.principal import PRINCIPAL_HEADER, Principal, PrincipalSigner


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", "")) if isinstance(self.body, dict) else str(self.body)


def call(
    url: str,
    method: str,
    target: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    principal: Principal | None = None,
    signer: PrincipalSigner | None = None,
    content_type: str = "application/json",
    signed_for: tuple[str, str, bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """Send ``method target`` with ``body``; sign ``principal`` for exactly this request
    (or for ``signed_for`` = (method, target, body), to replay a header elsewhere)."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    sent = dict(headers or {})
    if raw:
        sent["Content-Type"] = content_type
    if principal is not None:
        assert signer is not None
        m, t, b = signed_for or (method, target, raw)
        sent[PRINCIPAL_HEADER] = signer.sign(principal, method=m, target=t, body=b)
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=60)
    try:
        conn.request(method, target, body=raw, headers=sent)
        response = conn.getresponse()
        data = response.read()
        reply_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    try:
        parsed: Any = json.loads(data) if data else None
    except ValueError:
        parsed = data.decode("utf-8", "replace")
    return Reply(response.status, reply_headers, parsed)


def visits(reply: Reply) -> int:
    """The total visit count of a Q-table reply."""
    assert reply.status == 200, (reply.status, reply.body)
    return int(sum(map(sum, reply.body["visits"])))
