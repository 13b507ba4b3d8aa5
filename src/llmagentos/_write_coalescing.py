"""A transport that sends a response's head with its body: one system call, not two.

uvicorn writes a response's status line and headers in one ``transport.write`` and its
body in another, and asyncio sends each at once, so a small reply costs two ``send``
calls. On loopback a ``send`` also runs the receiver's side of TCP and wakes it, about
as much CPU as the rest of a proxied request's own Python work put together.
:class:`CoalescingTransport` holds one small write back until the next write, which
goes out with it, or until the end of the event loop's turn: the head of a reply whose
body comes at once leaves with the body, and a head whose body is slow (a stream)
leaves a turn later, as it would have.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["HOLD_BYTES", "CoalescingTransport"]

#: The largest write held back to go with the next one (a head is well under it).
HOLD_BYTES = 16 * 1024


class CoalescingTransport(asyncio.Transport):
    """``inner`` with at most one small write held back to join the next one."""

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._inner = inner
        self._loop = loop
        self._held: bytes | None = None
        self._flush_armed = False
        self._direct = False  # once handed to another protocol (a WebSocket): as is

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._inner.write(held + data if len(data) < HOLD_BYTES else held)
            if len(data) >= HOLD_BYTES:
                self._inner.write(data)  # no copy of a large body into the head
        elif self._direct or len(data) >= HOLD_BYTES or not data:
            self._inner.write(data)
        else:
            self._held = bytes(data)
            if not self._flush_armed:
                self._flush_armed = True
                self._loop.call_soon(self._flush_at_turn_end)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def flush(self) -> None:
        """Send the held write, if any."""
        held, self._held = self._held, None
        if held is not None:
            self._inner.write(held)

    def _flush_at_turn_end(self) -> None:
        self._flush_armed = False
        self.flush()

    # -- everything else is the inner transport's, after what is held is sent ----------

    def close(self) -> None:
        self.flush()
        self._inner.close()

    def abort(self) -> None:
        self._held = None
        self._inner.abort()

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._direct = True  # the new protocol's writes go out as it makes them
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def get_write_buffer_size(self) -> int:
        held = 0 if self._held is None else len(self._held)
        return self._inner.get_write_buffer_size() + held

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)
