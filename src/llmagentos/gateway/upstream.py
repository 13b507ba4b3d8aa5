"""The gateway's HTTP client for the hop to a replica.

The hop is on every proxied request, so its cost is the gateway's cost: aiohttp's
client adds about half what httpx's async client does on loopback (bench/README).
:class:`AiohttpUpstream` is the default; :class:`HttpxUpstream` runs over any httpx
transport, which lets tests put in-process ASGI apps behind the gateway.

Both answer the same way: an :class:`UpstreamReply`, or one of three errors the
gateway treats differently — :class:`UpstreamRefused` (nothing reached the replica:
safe to try another whatever the method), :class:`UpstreamTimeout` (504) and
:class:`UpstreamFailed` (502).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

from llmagentos.exceptions import MissingExtraError

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "AiohttpUpstream",
    "HttpxUpstream",
    "Upstream",
    "UpstreamError",
    "UpstreamFailed",
    "UpstreamRefused",
    "UpstreamReply",
    "UpstreamTimeout",
]


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A replica's answer, read whole. ``headers`` keeps repeats (``set-cookie``)."""

    status: int
    headers: list[tuple[str, str]]
    content: bytes


class UpstreamError(Exception):
    """The hop to a replica failed."""


class UpstreamRefused(UpstreamError):
    """The connection was refused or never made: the request reached no replica."""


class UpstreamTimeout(UpstreamError):
    """No complete answer within the route's timeout."""


class UpstreamFailed(UpstreamError):
    """The connection broke after the request may have reached the replica."""


class Upstream(Protocol):
    """What the gateway needs from an HTTP client."""

    async def request(
        self, method: str, url: str, *, body: bytes, headers: dict[str, str], timeout: float
    ) -> UpstreamReply:
        """Send one request (``url`` already carries its query string)."""
        ...

    async def aclose(self) -> None:
        """Close pooled connections."""
        ...


class AiohttpUpstream:
    """aiohttp's client with a keep-alive pool; bodies pass through untouched.

    Nothing is added to the request (no ``User-Agent``, no ``Accept-Encoding``) and
    nothing is decoded on the way back, so a compressed reply reaches a client that
    asked for it, byte for byte. The session is made on first use, inside the
    server's event loop.
    """

    def __init__(self, *, max_connections: int = 0) -> None:
        try:
            import aiohttp
        except ImportError as err:
            raise MissingExtraError("the gateway", "gateway", "aiohttp") from err
        self._aiohttp = aiohttp
        self._max_connections = max_connections  # 0: no cap
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            aiohttp = self._aiohttp
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, use_dns_cache=True),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                trust_env=False,
            )
        return self._session

    async def request(
        self, method: str, url: str, *, body: bytes, headers: dict[str, str], timeout: float
    ) -> UpstreamReply:
        aiohttp = self._aiohttp
        from yarl import URL

        try:
            async with self._client().request(
                method,
                URL(url, encoded=True),  # the client's own encoding, not re-quoted
                data=body or None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as answer:
                content = await answer.read()
                pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.raw_headers]
                return UpstreamReply(answer.status, pairs, content)
        except aiohttp.ClientConnectorError as err:
            raise UpstreamRefused(str(err)) from err
        except TimeoutError as err:  # aiohttp's timeouts are TimeoutErrors
            raise UpstreamTimeout(f"no answer within {timeout:g} s") from err
        except aiohttp.ClientError as err:
            raise UpstreamFailed(type(err).__name__) from err

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxUpstream:
    """httpx's async client, over ``transport`` (an in-process ASGI app in tests)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            transport=transport, follow_redirects=False, trust_env=False
        )

    async def request(
        self, method: str, url: str, *, body: bytes, headers: dict[str, str], timeout: float
    ) -> UpstreamReply:
        try:
            answer = await self._client.request(
                method, url, content=body, headers=headers, timeout=timeout
            )
        except httpx.ConnectError as err:
            raise UpstreamRefused(str(err)) from err
        except httpx.TimeoutException as err:
            raise UpstreamTimeout(f"no answer within {timeout:g} s") from err
        except httpx.HTTPError as err:
            raise UpstreamFailed(type(err).__name__) from err
        # httpx has decoded the body: its content-encoding no longer applies.
        pairs = [(k, v) for k, v in answer.headers.multi_items() if k != "content-encoding"]
        return UpstreamReply(answer.status_code, pairs, answer.content)

    async def aclose(self) -> None:
        await self._client.aclose()
