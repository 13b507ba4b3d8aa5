"""A scripted loopback HTTP server that misbehaves on purpose, for client and retry tests.

It speaks raw HTTP/1.1 over ``asyncio.start_server`` so a test controls every byte: status,
headers, pauses, and where the connection drops. Each request takes the next behaviour of
the script; after the last, the last one repeats (so ``[status(503)]`` always fails)::

    async with FaultServer([rate_limited(retry_after="2"), chat("hello")]) as server:
        model = OpenAICompatModel("m", base_url=server.url)
        ...  # inside allow_network_models(): the suite blocks network models
        assert server.count == 2
        assert server.requests[0].json()["model"] == "m"

Behaviours are small factories: :func:`chat`, :func:`stream`, :func:`status`,
:func:`rate_limited`, :func:`hang`, :func:`disconnect`, :func:`truncated_stream`,
:func:`invalid_json`, :func:`wrong_content_type`, :func:`trickle`, :func:`raw`.
The server binds 127.0.0.1 on a free port and stops, cancelling open handlers, on exit.
Sync code (``model.request``) must not block the loop the server runs on: use
``with FaultServer([...]).in_thread() as server:``, which serves from a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = [
    "Behaviour",
    "FaultServer",
    "RecordedRequest",
    "chat",
    "completion_json",
    "disconnect",
    "hang",
    "invalid_json",
    "rate_limited",
    "raw",
    "respond",
    "sse_body",
    "status",
    "stream",
    "trickle",
    "truncated_stream",
    "wrong_content_type",
]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}  # fmt: skip


@dataclass
class RecordedRequest:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Behaviour = Callable[[RecordedRequest, asyncio.StreamWriter], Awaitable[None]]
"""Answers one request by writing to the connection (which is closed afterwards)."""


@dataclass
class FaultServer:
    """A loopback server that answers request *n* with ``behaviours[n]`` (the last repeats)."""

    behaviours: Sequence[Behaviour]
    requests: list[RecordedRequest] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        if not self.behaviours:
            raise ValueError("FaultServer needs at least one behaviour")
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The API base URL (``http://127.0.0.1:<port>/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        """How many requests arrived."""
        return len(self.requests)

    async def start(self) -> FaultServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self, *, timeout: float = 10.0) -> Iterator[FaultServer]:
        """Serve from a private event loop in a thread, for tests of sync code."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        thread = threading.Thread(target=serve, name="fault-server", daemon=True)
        thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the fault server did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            index = min(len(self.requests), len(self.behaviours) - 1)
            self.requests.append(request)
            await self.behaviours[index](request, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: that is what some tests do on purpose
        except asyncio.CancelledError:
            # stop() cancels open handlers; ending normally keeps Python 3.11's
            # start_server callback from logging the cancelled task as an error.
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._handlers.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0]:
        return None
    method, path, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RecordedRequest(method, path, headers, body)


def _head(code: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {code} {_REASONS.get(code, 'Status')}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


# -- behaviours ----------------------------------------------------------------------------


def raw(data: bytes) -> Behaviour:
    """Write exactly ``data`` (status line, headers and all), then close."""

    async def behave(request: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        await _send(writer, data)

    return behave


def respond(
    code: int, body: bytes | str, *, content_type: str, headers: dict[str, str] | None = None
) -> Behaviour:
    """A complete response with a Content-Length."""
    data = body.encode() if isinstance(body, str) else body
    all_headers = {"Content-Type": content_type, "Content-Length": str(len(data))}
    return raw(_head(code, {**all_headers, **(headers or {})}) + data)


def completion_json(
    text: str | None = "hello",
    *,
    tool_calls: Sequence[dict[str, Any]] = (),
    finish_reason: str = "stop",
    usage: tuple[int, int] = (5, 2),
) -> dict[str, Any]:
    """An OpenAI chat-completion body."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "model": "fault",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                  "total_tokens": sum(usage)},
    }  # fmt: skip


def chat(text: str | None = "hello", **kwargs: Any) -> Behaviour:
    """200 with a well-formed chat completion (see :func:`completion_json`)."""
    return respond(
        200, json.dumps(completion_json(text, **kwargs)), content_type="application/json"
    )


def status(
    code: int,
    body: str = "",
    *,
    retry_after: str | None = None,
    headers: dict[str, str] | None = None,
) -> Behaviour:
    """An error status with a JSON error body (``body`` is the message)."""
    extra = dict(headers or {})
    if retry_after is not None:
        extra["Retry-After"] = retry_after
    payload = json.dumps({"error": {"message": body or f"fault server: {code}", "code": code}})
    return respond(code, payload, content_type="application/json", headers=extra)


def rate_limited(retry_after: str = "1") -> Behaviour:
    """429 Too Many Requests with a Retry-After header (seconds or an HTTP date)."""
    return status(429, "rate limited", retry_after=retry_after)


def hang() -> Behaviour:
    """Read the request and never answer (until the client leaves or the server stops)."""

    async def behave(request: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()

    return behave


def disconnect() -> Behaviour:
    """Close the connection without a byte of answer."""
    return raw(b"")


def invalid_json() -> Behaviour:
    """200, ``application/json``, a body that is not JSON."""
    return respond(200, '{"choices": [ this is not json', content_type="application/json")


def wrong_content_type() -> Behaviour:
    """200 with an HTML page, as a captive portal or a misrouted proxy sends."""
    return respond(200, "<html><body>Welcome to the proxy</body></html>", content_type="text/html")


def sse_body(
    texts: Sequence[str] = ("Hel", "lo"),
    *,
    tool_calls: Sequence[dict[str, Any]] = (),
    finish_reason: str = "stop",
    usage: tuple[int, int] | None = (5, 2),
    done: bool = True,
) -> list[bytes]:
    """The events of a streamed chat completion, one ``bytes`` per event."""
    chunks: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    chunks += [{"choices": [{"index": 0, "delta": {"content": t}}]} for t in texts]
    chunks += [{"choices": [{"index": 0, "delta": {"tool_calls": [c]}}]} for c in tool_calls]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
    if usage is not None:
        chunks.append({"choices": [], "usage": {"prompt_tokens": usage[0],
                                                "completion_tokens": usage[1]}})  # fmt: skip
    events = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
    if done:
        events.append(b"data: [DONE]\n\n")
    return events


async def _stream_events(
    writer: asyncio.StreamWriter, events: Sequence[bytes], delay: float
) -> None:
    await _send(
        writer, _head(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    )
    for event in events:
        await _send(writer, event)
        if delay:
            await asyncio.sleep(delay)


def stream(texts: Sequence[str] = ("Hel", "lo"), *, delay: float = 0.0, **kwargs: Any) -> Behaviour:
    """A well-formed SSE chat stream (see :func:`sse_body`); ``delay`` between events."""
    events = sse_body(texts, **kwargs)

    async def behave(request: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        await _stream_events(writer, events, delay)

    return behave


def truncated_stream(texts: Sequence[str] = ("Hel", "lo")) -> Behaviour:
    """An SSE stream that stops mid-event: no finish reason, no ``[DONE]``, then close."""
    events = [e for e in sse_body(texts, done=False, usage=None) if b"finish_reason" not in e]
    events.append(b'data: {"choices": [{"index": 0, "delta": {"content": "cut of')

    async def behave(request: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        await _stream_events(writer, events, 0.0)

    return behave


def trickle(
    interval: float = 0.05, texts: Sequence[str] = ("slow",) * 100, *, step: int = 16
) -> Behaviour:
    """A valid SSE stream sent ``step`` bytes every ``interval`` seconds.

    Every read succeeds well within a read timeout, so only an overall deadline stops it.
    """
    data = b"".join(sse_body(texts))

    async def behave(request: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        await _send(writer, _head(200, {"Content-Type": "text/event-stream"}))
        for start in range(0, len(data), step):
            await _send(writer, data[start : start + step])
            await asyncio.sleep(interval)

    return behave
