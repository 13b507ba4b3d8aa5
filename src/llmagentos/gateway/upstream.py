"""The gateway's HTTP client for the hop to a replica.

The hop is on every proxied request, so its cost is the gateway's cost: aiohttp's
client adds about half what httpx's async client does on loopback (bench/README).
:class:`AiohttpUpstream` is the default; :class:`HttpxUpstream` runs over any httpx
transport, which lets tests put in-process ASGI apps behind the gateway.

Neither client keeps cookies: a replica's ``Set-Cookie`` is its caller's alone, passed
on to that caller and never stored to go out with the next request, whoever sends it.

A reply whose content type is a stream (``text/event-stream``, as OpenAI-style token
streams, or ``application/x-ndjson``) and whose status is not a 5xx is handed on as it
arrives (:attr:`UpstreamReply.stream`) instead of being read whole; the route's
timeout then bounds the wait for the headers and for each next piece.

Both keep an idle connection to a replica for ``idle_timeout`` seconds at most
(:data:`IDLE_TIMEOUT` by default, under uvicorn's 5 s keep-alive), so the gateway lets it
go before the replica closes it; aiohttp's also never writes to a pooled connection the
replica has closed, and sends a ``replayable`` request once more, on a new connection,
when the pooled one it went out on was closed before the reply's head arrived
(connections.py).

Both answer the same way: an :class:`UpstreamReply`, or one of three errors the
gateway treats differently — :class:`UpstreamRefused` (nothing reached the replica:
safe to try another whatever the method), :class:`UpstreamTimeout` (504) and
:class:`UpstreamFailed` (502).
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx

from llmagentos.exceptions import ConfigError, MissingExtraError
from llmagentos.gateway.networks import ReplicaNetworks, guarded_resolver

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

__all__ = [
    "IDLE_TIMEOUT",
    "STREAMED_TYPES",
    "AiohttpUpstream",
    "Headers",
    "HttpxUpstream",
    "Upstream",
    "UpstreamError",
    "UpstreamFailed",
    "UpstreamRefused",
    "UpstreamReply",
    "UpstreamTimeout",
    "check_idle_timeout",
    "is_streamed",
    "tls_context",
]


#: Request headers for the hop: pairs (repeats kept) or a mapping.
Headers = Sequence[tuple[str, str]] | Mapping[str, str]
#: Content types passed on as they arrive rather than read whole.
STREAMED_TYPES = frozenset({"text/event-stream", "application/x-ndjson"})
#: Seconds an idle connection to a replica is kept for the next request: under the
#: keep-alive of uvicorn (5 s, what ``llmagentos serve`` runs), so the gateway lets a
#: connection go before the replica closes it under a request.
IDLE_TIMEOUT = 4.0
log = logging.getLogger("llmagentos.gateway")
_ANYWHERE = ReplicaNetworks(["0.0.0.0/0", "::/0"])


def is_streamed(status: int, content_type: str) -> bool:
    """Whether a reply with this status and ``Content-Type`` is passed on as it comes."""
    return status < 500 and content_type.split(";", 1)[0].strip().lower() in STREAMED_TYPES


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A replica's answer. ``headers`` keeps repeats (``set-cookie``).

    ``content`` is the whole body, unless ``stream`` is set: then the body comes from
    iterating ``stream`` once (which releases the connection at its end).
    """

    status: int
    headers: list[tuple[str, str]]
    content: bytes
    stream: AsyncGenerator[bytes, None] | None = None


def check_idle_timeout(seconds: Any, field: str = "upstream_idle_timeout") -> float:
    """``seconds`` as an idle timeout (finite, >= 0), or a ``ConfigError`` naming ``field``."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not (0 <= seconds < math.inf)
    ):
        raise ConfigError(field, f"must be seconds >= 0 (got {seconds!r})")
    return float(seconds)


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client TLS context that trusts ``ca_file``'s certificates (a private CA).

    Raises:
        ConfigError: the file does not load as PEM certificates.
    """
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError("upstream_ca_file", f"{ca_file}: {err}") from err


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
        self, method: str, url: str, *, body: bytes, headers: Headers, timeout: float,
        replayable: bool = False,
    ) -> UpstreamReply:  # fmt: skip
        """Send one request (``url`` already carries its query string); ``replayable``:
        it may run twice (an idempotent method, route or key), so a connection closed
        under it may be retried."""
        ...

    async def aclose(self) -> None:
        """Close pooled connections."""
        ...


class AiohttpUpstream:
    """aiohttp's client with a keep-alive pool; bodies pass through untouched.

    Nothing is added to the request (no ``User-Agent``, no ``Accept-Encoding``) and
    nothing is decoded on the way back, so a compressed reply reaches a client that
    asked for it, byte for byte. The session is made on first use, inside the
    server's event loop. ``idle_timeout``: seconds an idle connection is kept (0: none
    is reused).
    """

    def __init__(
        self,
        *,
        max_connections: int = 0,
        ca_file: str | None = None,
        networks: ReplicaNetworks | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        try:
            import aiohttp

            from llmagentos.gateway import connections
        except ImportError as err:
            raise MissingExtraError("the gateway", "gateway", "aiohttp") from err
        self._aiohttp = aiohttp
        self._connections = connections
        self._max_connections = max_connections  # 0: no cap
        idle = check_idle_timeout(idle_timeout)
        self._reuse: dict[str, Any] = {"keepalive_timeout": idle} if idle else {"force_close": True}
        # Host names are resolved on the runtime's pool; with networks, an address
        # outside them is never connected to, whatever the name resolved to before.
        self._networks = networks
        # https replicas are verified against the system's CAs, or this file's.
        self._tls: ssl.SSLContext | bool = tls_context(ca_file) if ca_file else True
        self._session: aiohttp.ClientSession | None = None
        self._limits: dict[float, aiohttp.ClientTimeout] = {}  # by route timeout

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            aiohttp = self._aiohttp
            self._session = aiohttp.ClientSession(
                connector=self._connections.HopConnector(
                    **self._reuse,
                    limit=self._max_connections,
                    use_dns_cache=True,
                    ssl=self._tls,
                    resolver=guarded_resolver(self._networks or _ANYWHERE),
                ),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),  # one client's cookies, not the next's
            )
        return self._session

    async def request(
        self, method: str, url: str, *, body: bytes, headers: Headers, timeout: float,
        replayable: bool = False,
    ) -> UpstreamReply:  # fmt: skip
        aiohttp = self._aiohttp
        from yarl import URL

        # The route's timeout bounds the answer (headers and body: asyncio.timeout); a
        # streamed body's pieces each get that long again (_pieces). Not aiohttp's
        # sock_read as well: it re-arms a timer on every read of every reply.
        limits = self._limits.get(timeout)
        if limits is None:
            limits = self._limits[timeout] = aiohttp.ClientTimeout(
                total=None, sock_connect=timeout, sock_read=None
            )
        try:
            async with asyncio.timeout(timeout):
                answer = await self._send(
                    method, URL(url, encoded=True), body, headers, limits=limits,
                    replayable=replayable,
                )  # fmt: skip
                pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.raw_headers]
                if is_streamed(answer.status, answer.headers.get("content-type", "")):
                    return UpstreamReply(answer.status, pairs, b"", self._pieces(answer, timeout))
                try:
                    content = await answer.read()
                finally:
                    answer.release()
                return UpstreamReply(answer.status, pairs, content)
        except aiohttp.ClientConnectorError as err:
            raise UpstreamRefused(str(err)) from err
        except TimeoutError as err:  # aiohttp's timeouts are TimeoutErrors too
            raise UpstreamTimeout(f"no answer within {timeout:g} s") from err
        except aiohttp.ClientError as err:
            raise UpstreamFailed(type(err).__name__) from err
        except ValueError as err:  # what aiohttp will not send (a control in a header)
            raise UpstreamFailed(f"not sent: {err}") from err

    async def _send(
        self, method: str, url: URL, body: bytes, headers: Headers, *,
        limits: aiohttp.ClientTimeout, replayable: bool,
    ) -> aiohttp.ClientResponse:  # fmt: skip
        """The reply, its head read. A connection closed before that head arrived (a
        close that crossed the request on a pooled connection, or a replica failing on
        it) is answered by sending the request once more, on a new connection, only
        when it came from the pool and the request may run twice."""
        aiohttp = self._aiohttp
        attempt = self._connections.HopAttempt()
        token = self._connections.ATTEMPT.set(attempt)  # read by the connector
        try:
            while True:
                try:
                    return await self._client().request(
                        method, url, data=body or None, headers=headers, timeout=limits,
                        allow_redirects=False,
                    )  # fmt: skip
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as err:
                    if isinstance(err, aiohttp.ClientConnectorError) or attempt.fresh:
                        raise
                    if not (replayable and attempt.reused):
                        raise  # it may have run: not sent twice
                    attempt.fresh = True
                    log.info("%s %s again on a new connection: %r", method, url, err)
        finally:
            self._connections.ATTEMPT.reset(token)

    async def _pieces(self, answer: Any, timeout: float) -> AsyncGenerator[bytes, None]:
        pieces = answer.content.iter_any()
        try:
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        piece = await anext(pieces)
                except StopAsyncIteration:
                    break
                yield piece
        except (self._aiohttp.ClientError, TimeoutError) as err:
            # Headers are gone already: all a proxy can do is end the stream early.
            log.warning("stream from %s cut: %s", answer.url, type(err).__name__)
        finally:
            if answer.content.at_eof():
                answer.release()  # the connection goes back to the pool
            else:
                answer.close()  # the client left early: this connection is spent

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxUpstream:
    """httpx's async client, over ``transport`` (an in-process ASGI app in tests).

    httpx removes dot segments from every URL it builds; a target it would change is
    refused (:class:`UpstreamFailed`) rather than sent as another path. (The gateway
    admits no such target in the first place.)
    """

    def __init__(
        self, transport: httpx.AsyncBaseTransport | None = None, *,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:  # fmt: skip
        # httpx's default limits but the idle time (5 s there). httpcore's pool drops a
        # pooled connection whose socket is readable, as connections.py does, and sends
        # nothing twice: ``replayable`` is not read.
        limits = httpx.Limits(
            max_connections=100, max_keepalive_connections=20,
            keepalive_expiry=check_idle_timeout(idle_timeout),
        )  # fmt: skip
        self._client = httpx.AsyncClient(
            transport=transport, follow_redirects=False, trust_env=False, limits=limits,
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # it keeps none
        )  # fmt: skip

    async def request(
        self, method: str, url: str, *, body: bytes, headers: Headers, timeout: float,
        replayable: bool = False,
    ) -> UpstreamReply:  # fmt: skip
        outgoing = self._client.build_request(
            method, url, content=body, headers=headers, timeout=timeout
        )
        wanted = urlsplit(url)
        target = wanted.path + ("?" + wanted.query if wanted.query else "")
        if outgoing.url.raw_path.decode("latin-1") != (target or "/"):
            raise UpstreamFailed(f"httpx would not send the target {target!r} as it is")
        try:
            answer = await self._client.send(outgoing, stream=True)
            # httpx decodes the body: its content-encoding no longer applies.
            pairs = [(k, v) for k, v in answer.headers.multi_items() if k != "content-encoding"]
            if is_streamed(answer.status_code, answer.headers.get("content-type", "")):
                return UpstreamReply(answer.status_code, pairs, b"", self._pieces(answer))
            try:
                content = await answer.aread()
            finally:
                await answer.aclose()
        except httpx.ConnectError as err:
            raise UpstreamRefused(str(err)) from err
        except httpx.TimeoutException as err:
            raise UpstreamTimeout(f"no answer within {timeout:g} s") from err
        except httpx.HTTPError as err:
            raise UpstreamFailed(type(err).__name__) from err
        return UpstreamReply(answer.status_code, pairs, content)

    @staticmethod
    async def _pieces(answer: httpx.Response) -> AsyncGenerator[bytes, None]:
        try:
            async for piece in answer.aiter_bytes():
                yield piece
        except httpx.HTTPError as err:
            log.warning("stream from %s cut: %s", answer.url, type(err).__name__)
        finally:
            await answer.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()
