"""The headers the hop sends a replica, whatever case the server gave their names in."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")


def _request(headers: list[tuple[bytes, bytes]]) -> Any:
    from starlette.requests import Request

    return Request({"type": "http", "method": "POST", "headers": headers,
                    "client": ("10.0.0.9", 5000), "path": "/svc/x"})  # fmt: skip


def test_the_hop_s_headers_whatever_case_the_server_gave_them_in() -> None:
    """ASGI says servers *should* lower header names: one that does not still gets no
    credential or hop-by-hop header through, and its trace context is read."""
    from llmagentos.gateway.hop import upstream_headers

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    sent = upstream_headers(
        _request([(b"Authorization", b"Bearer s"), (b"Cookie", b"c=1"), (b"X-Api-Key", b"k"),
                  (b"Connection", b"X-Hop"), (b"X-Hop", b"1"), (b"TraceParent", parent.encode()),
                  (b"X-Forwarded-For", b"1.2.3.4"), (b"Accept", b"*/*")]),
        "rid-2",
    )  # fmt: skip
    names = [name for name, _ in sent]
    assert names == ["accept", "x-request-id", "traceparent", "x-forwarded-for"]
    values = dict(sent)
    assert values["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert values["traceparent"] != parent  # the gateway's own span is the parent now
    assert values["x-forwarded-for"] == "1.2.3.4, 10.0.0.9"
