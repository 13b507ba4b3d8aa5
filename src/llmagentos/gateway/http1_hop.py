"""The gateway's default hop to a replica: keep-alive HTTP/1.1 on httptools' parser.

The hop is on every proxied request, and a general client costs a proxy more than the
rest of it: a reverse proxy on uvicorn whose hop was aiohttp's client spent about 80 us
of CPU per request more than one whose hop wrote the request's bytes and read the
reply with httptools (uvicorn's parser, llhttp in C), which cost no more than the bare
app behind it (bench/README). The gateway needs little of a general client: no
redirects, cookies, proxies, decoding or automatic headers. So this one sends the head
and body it is given, as given, in one write, and reads the reply with httptools.

What it keeps from a careful client:

- a pool of idle connections per replica, each kept ``idle_timeout`` seconds at most
  (under uvicorn's 5 s keep-alive, so the gateway lets a connection go first), and
  polled before it is written to: an idle connection with something to read holds the
  replica's close (:func:`~llmagentos.gateway.connections.peer_closed`);
- a request that may run twice (``replayable``) sent once more, on a new connection,
  when the pooled one it went out on closed before any byte of the reply came;
- host names resolved on the runtime's pool, and no address outside the replica
  networks connected to, whatever a name resolves to now;
- https replicas verified against the system's CAs or ``ca_file``'s;
- nothing it will not send as given: a target or header with a control character or
  space where none may be is refused (:class:`UpstreamFailed`), never rewritten;
- replies read as llhttp reads them, strictly: chunked or sized bodies, informational
  (1xx) replies skipped, a body up to the close when a reply gives no length, a
  ``HEAD`` reply's connection closed after its head (httptools cannot be told the
  reply has no body);
- streamed content types (:data:`~llmagentos.gateway.upstream.STREAMED_TYPES`) handed
  on as they arrive, reading paused while more than :data:`STREAM_BUFFER` bytes wait.

Errors are the hop's three (upstream.py): refused (nothing reached a replica), timeout
(504) and failed (502).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import socket
import ssl
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

import httptools

from llmagentos._blocking import run_blocking
from llmagentos._deadlines import deadlines
from llmagentos.gateway.networks import ReplicaNetworks
from llmagentos.gateway.upstream import (
    IDLE_TIMEOUT,
    Headers,
    UpstreamFailed,
    UpstreamRefused,
    UpstreamReply,
    UpstreamTimeout,
    check_idle_timeout,
    is_streamed,
    log,
    tls_context,
)

__all__ = ["STREAM_BUFFER", "Http1Upstream", "peer_closed"]

#: Bytes of a streamed reply held for a slow client before reading from the replica stops.
STREAM_BUFFER = 256 * 1024
#: Methods whose request carries a length even when the body is empty (as aiohttp does).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"[\x21-\x7e]+")  # no space, no control, ASCII
_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab is allowed in a value
_KNOWN_NAMES: set[str] = set()  # header names already checked (a few dozen in practice)


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)  # errors and hang-ups too
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows
    return bool(readable)


def peer_closed(protocol: Any) -> bool:
    """Whether an idle pooled connection has something to read: the peer's close.

    An idle HTTP/1.1 connection has nothing to read, so a readable one holds the
    replica's end-of-stream or reset (or bytes it sent unasked); the event loop may not
    have read it yet in a busy turn. httpcore's pool applies the same rule.
    """
    transport = getattr(protocol, "transport", None)
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None:
        return False  # nothing to poll: the loop's own notice stands
    try:
        return _readable(sock.fileno())
    except (OSError, ValueError):  # closed under us
        return True


def _check_name(name: str) -> None:
    if name in _KNOWN_NAMES:
        return
    if not _TOKEN.fullmatch(name):
        raise UpstreamFailed(f"not sent: header name {name!r} is not a token")
    if len(_KNOWN_NAMES) < 4096:
        _KNOWN_NAMES.add(name)


def _head(method: str, target: str, host: str, headers: Headers, body: bytes) -> bytes:
    """The request's head as it goes on the wire, or :class:`UpstreamFailed`."""
    if not _TOKEN.fullmatch(method):
        raise UpstreamFailed(f"not sent: method {method!r} is not a token")
    if not _TARGET.fullmatch(target):
        raise UpstreamFailed(f"not sent: target {target!r} has a space or control character")
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    lines = [f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n"]
    values = []
    for name, value in pairs:
        _check_name(name)
        values.append(value)
        lines.append(f"{name}: {value}\r\n")
    if _VALUE_BAD.search("".join(values)):  # one scan for all; then which one
        for name, value in pairs:
            if _VALUE_BAD.search(value):
                raise UpstreamFailed(f"not sent: header {name!r} has a control character")
    if body or method in _BODY_METHODS:
        lines.append(f"content-length: {len(body)}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError as err:
        raise UpstreamFailed(f"not sent: a header is not Latin-1 ({err.reason})") from err


class _Origin:
    """Where a replica URL's requests go: its address, Host header and TLS."""

    __slots__ = ("host", "host_header", "key", "port", "server_hostname", "tls")

    def __init__(self, scheme: str, host: str, port: int | None, tls: ssl.SSLContext | None):
        default = 443 if scheme == "https" else 80
        self.host = host.strip("[]")
        self.port = port or default
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = shown if self.port == default else f"{shown}:{self.port}"
        self.tls = tls if scheme == "https" else None
        self.server_hostname = self.host if self.tls is not None else None
        self.key = (scheme, self.host, self.port)


class _Connection(asyncio.Protocol):
    """One connection to a replica, and the reply being read on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.reusable = True
        self.key: tuple[str, str, int] = ("", "", 0)
        self.lease = 0  # counts exchanges: a stale finalizer must not close a later one
        self._poller: select.poll | None = None
        self._reset(head=False, want_stream=False)

    def _reset(self, *, head: bool, want_stream: bool) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.received = False  # any byte of the reply
        self.head_done = False
        self.complete = False
        self.streamed = False
        self.to_close_end = False  # the body runs to the close: no length was given
        self.head_request = head
        self.want_stream = want_stream
        self.failure: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.buffered = 0

    # -- asyncio -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sock is not None and hasattr(select, "poll"):
            with contextlib.suppress(OSError, ValueError):
                self._poller = select.poll()  # made once: polled before each reuse
                self._poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)

    def peer_closed(self) -> bool:
        """:func:`peer_closed` for this connection, with its own poller."""
        if self._poller is None:
            return peer_closed(self)
        try:
            return bool(self._poller.poll(0))
        except (OSError, ValueError):
            return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reusable = False
        if self.head_done and not self.complete and self.to_close_end:
            self.on_message_complete()  # the close ends a body with no length
        elif not self.complete:
            self._fail(ConnectionError(f"the replica closed the connection ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.complete:
            self.reusable = False  # bytes nobody asked for: the connection is spent
            self._close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionError("the replica switched protocols"))
        except httptools.HttpParserError as err:
            self._fail(ConnectionError(f"the replica's reply does not parse: {err}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost settles the reply

    # -- httptools ---------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return  # a second reply nobody asked for: data_received closes the connection
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.complete:
            self.reusable = False
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.headers = []  # informational: the real reply follows (101 fails above)
            return
        self.status = status
        self.head_done = True
        keep = self.parser.should_keep_alive()
        sized = content_type = ""
        for name, value in self.headers:
            lowered = name.lower()
            if lowered in ("content-length", "transfer-encoding"):
                sized = value
            elif lowered == "content-type":
                content_type = value
        bodiless = status in (204, 304)
        self.to_close_end = not sized and not bodiless and not self.head_request
        if not keep or self.to_close_end:
            self.reusable = False
        if self.head_request:
            self.reusable = False  # httptools would read a body that never comes
            self.on_message_complete()
        elif self.want_stream and is_streamed(status, content_type):
            self.streamed = True
            self._wake()  # the head is enough: the body follows as it arrives

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.body.append(body)
        if self.streamed:
            self.buffered += len(body)
            if self.buffered > STREAM_BUFFER and self.transport is not None:
                self.transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # the end of an informational reply
        if self.complete:
            return
        self.complete = True
        self._wake()

    # -- the exchange ------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, failure: BaseException) -> None:
        self.reusable = False
        if self.failure is None:
            self.failure = failure
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(failure)
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def time_out(self) -> None:
        self._fail(TimeoutError())

    async def wait(self) -> None:
        """Until the reply's head (a stream) or the whole reply is in, or it fails."""
        while not (self.complete or (self.streamed and self.head_done)):
            if self.failure is not None:
                raise self.failure
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    async def next_piece(self) -> bytes | None:
        """The next piece of a streamed body, or ``None`` at its end."""
        while not self.body:
            if self.complete:
                return None
            if self.failure is not None:
                raise self.failure
            await self.wait_more()
        pieces, self.body, self.buffered = self.body, [], 0
        if self.transport is not None and not self.complete:
            self.transport.resume_reading()
        return b"".join(pieces)

    async def wait_more(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


class Http1Upstream:
    """Keep-alive HTTP/1.1 to replicas, read with httptools; bodies pass untouched.

    Nothing is added to the request but ``Host`` and its length (no ``User-Agent``,
    no ``Accept-Encoding``), nothing decoded on the way back, no cookie kept.
    ``idle_timeout``: seconds an idle connection is kept (0: none is reused).
    """

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        networks: ReplicaNetworks | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._idle_timeout = check_idle_timeout(idle_timeout)
        self._networks = networks
        self._tls = tls_context(ca_file) if ca_file else ssl.create_default_context()
        self._origins: dict[str, tuple[_Origin, str]] = {}  # by the URL's origin part
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._pruning = False  # a sweep of idle connections is due

    def _split(self, url: str) -> tuple[_Origin, str]:
        """The URL's origin (cached: a few replicas, many targets) and its target."""
        start = url.find("//") + 2
        slash = url.find("/", start)
        cut = len(url) if slash < 0 else slash
        question = url.find("?", start, cut)
        if question >= 0:
            cut = question
        origin_part, target = url[:cut], url[cut:] or "/"
        if target[0] == "?":
            target = "/" + target
        found = self._origins.get(origin_part)
        if found is None:
            from urllib.parse import urlsplit

            parts = urlsplit(origin_part)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UpstreamRefused(f"not an http(s) replica URL: {origin_part!r}")
            try:
                port = parts.port
            except ValueError as err:
                raise UpstreamRefused(f"{origin_part!r}: {err}") from err
            found = (_Origin(parts.scheme, parts.hostname, port, self._tls), origin_part)
            if len(self._origins) < 1024:
                self._origins[origin_part] = found
        return found[0], target

    async def request(
        self, method: str, url: str, *, body: bytes, headers: Headers, timeout: float,
        replayable: bool = False,
    ) -> UpstreamReply:  # fmt: skip
        origin, target = self._split(url)
        head = _head(method, target, origin.host_header, headers, body)
        deadline = asyncio.get_running_loop().time() + timeout
        fresh = False
        while True:
            conn, reused = await self._take(origin, fresh, deadline, timeout)
            try:
                return await self._exchange(
                    conn, head, body, method=method, deadline=deadline, timeout=timeout
                )
            except ConnectionError as err:
                if not (replayable and reused and not conn.received) or fresh:
                    raise UpstreamFailed(type(err).__name__) from err
                fresh = True  # the pooled connection was closed under it: once more
                log.info("%s %s again on a new connection: %s", method, url, err)

    async def _exchange(
        self, conn: _Connection, head: bytes, body: bytes, *, method: str, deadline: float,
        timeout: float,
    ) -> UpstreamReply:  # fmt: skip
        conn._reset(head=method == "HEAD", want_stream=True)
        conn.lease += 1
        transport = conn.transport
        if transport is None:
            raise ConnectionError("the replica closed the connection before the request")
        self._busy.add(conn)
        timers = deadlines()  # the route's timeout, in seconds: a sweep's lateness is fine
        timer = timers.add(deadline, conn.time_out)
        handed_on = False
        try:
            transport.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                transport.write(body)  # no copy of a large body into the head
            await conn.wait()
            headers = conn.headers
            if conn.streamed:
                timers.cancel(timer)
                handed_on = True
                pieces = self._pieces(conn, timeout)
                # A stream never iterated never runs its finally: close it when dropped.
                weakref.finalize(pieces, self._drop, conn, conn.lease)
                return UpstreamReply(conn.status, headers, b"", pieces)
            content = b"".join(conn.body)
            return UpstreamReply(conn.status, headers, content)
        except TimeoutError as err:
            raise UpstreamTimeout(f"no answer within {timeout:g} s") from err
        finally:
            timers.cancel(timer)
            if not handed_on:
                self._give_back(conn)

    def _drop(self, conn: _Connection, lease: int) -> None:
        if conn.lease == lease and conn in self._busy:
            self._busy.discard(conn)
            conn._close()

    def _give_back(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if conn.reusable and conn.complete and conn.transport is not None and self._idle_timeout:
            now = conn.idle_since = asyncio.get_running_loop().time()
            key = conn.key
            pool = self._idle.get(key)
            if pool is None:
                pool = self._idle[key] = deque()
            pool.append(conn)
            if not self._pruning:  # let idle connections go even if no request comes
                self._pruning = True
                deadlines().add(now + self._idle_timeout, self._prune)
        else:
            conn._close()  # a reply not read to its end, or one that said to close

    def _prune(self) -> None:
        """Close the connections idle past ``idle_timeout`` (the oldest are on the left)."""
        now = asyncio.get_running_loop().time()
        oldest = now - self._idle_timeout
        for key, pool in list(self._idle.items()):
            while pool and (pool[0].idle_since < oldest or pool[0].transport is None):
                pool.popleft()._close()
            if not pool:
                del self._idle[key]
        self._pruning = bool(self._idle)
        if self._pruning:
            first = min(pool[0].idle_since for pool in self._idle.values())
            deadlines().add(first + self._idle_timeout, self._prune)

    async def _take(
        self, origin: _Origin, fresh: bool, deadline: float, timeout: float
    ) -> tuple[_Connection, bool]:
        """A connection to ``origin``: the latest idle one still open, else a new one."""
        pool = self._idle.get(origin.key)
        if pool and not fresh:
            loop = asyncio.get_running_loop()
            oldest = loop.time() - self._idle_timeout
            while pool:
                conn = pool.pop()
                if conn.transport is None or conn.idle_since < oldest or conn.peer_closed():
                    conn._close()  # unwritten: the replica saw nothing of this request
                    continue
                return conn, True
        try:
            async with asyncio.timeout_at(deadline):
                conn = await self._connect(origin)
        except TimeoutError as err:
            raise UpstreamTimeout(f"no connection within {timeout:g} s") from err
        conn.key = origin.key
        return conn, False

    async def _connect(self, origin: _Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        addresses = await self._addresses(origin)
        failures = []
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    _Connection, address, origin.port, ssl=origin.tls,
                    server_hostname=origin.server_hostname,
                )  # fmt: skip
                return conn
            except ssl.SSLError as err:
                raise UpstreamFailed(f"TLS to {origin.host_header}: {err}") from err
            except OSError as err:
                failures.append(f"{address}: {err.strerror or err}")
        raise UpstreamRefused(f"cannot connect to {origin.host_header}: {'; '.join(failures)}")

    async def _addresses(self, origin: _Origin) -> list[str]:
        networks = self._networks
        try:
            infos = (
                await run_blocking(
                    socket.getaddrinfo, origin.host, origin.port, 0, socket.SOCK_STREAM
                )
                if not _is_ip(origin.host)
                else [(0, 0, 0, "", (origin.host, origin.port))]
            )
        except (OSError, UnicodeError) as err:
            raise UpstreamRefused(f"cannot resolve {origin.host!r}: {err}") from err
        found = [str(info[4][0]) for info in infos]
        allowed = [a for a in dict.fromkeys(found) if networks is None or networks.allows(a)]
        if not allowed:
            raise UpstreamRefused(
                f"{origin.host} resolves outside the replica networks ({networks})"
            )
        return allowed

    async def _pieces(self, conn: _Connection, timeout: float) -> AsyncGenerator[bytes, None]:
        try:
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        piece = await conn.next_piece()
                except (ConnectionError, TimeoutError) as err:
                    # Headers are gone already: all a proxy can do is end the stream early.
                    log.warning("stream cut: %s", type(err).__name__)
                    conn.reusable = False
                    break
                if piece is None:
                    break
                yield piece
        finally:
            self._give_back(conn)  # closed unless read to its end

    async def aclose(self) -> None:
        for pool in self._idle.values():
            for conn in pool:
                conn._close()
        self._idle.clear()
        for conn in list(self._busy):
            conn._close()
        self._busy.clear()


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True
