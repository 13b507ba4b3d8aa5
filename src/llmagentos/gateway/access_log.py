"""Where the gateway's access log goes: one JSON line per proxied request.

The gateway logs to the ``llmagentos.gateway.access`` logger, so any logging handler
can take the lines. The command line's sink batches them: a request only appends its
line to a buffer, and a background thread writes what has gathered every 50 ms in one
write. So neither a slow disk nor a per-line thread wake-up stalls a request.

The buffer is bounded (``max_pending`` lines, 10,000 by default): when the stream is
slower than the traffic (a full pipe nobody reads, a stalled disk), new lines are
dropped and counted (:func:`dropped_lines`, ``llmagentos_gateway_access_log_dropped``
in the gateway's /metrics) rather than growing the gateway's memory without end.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from pathlib import Path
from typing import TextIO

from llmagentos.exceptions import ConfigError

__all__ = [
    "ACCESS_LOGGER", "BatchingHandler", "configure_access_log", "dropped_lines", "plain_sink",
]  # fmt: skip

ACCESS_LOGGER = "llmagentos.gateway.access"
DEFAULT_MAX_PENDING = 10_000


class _Dropped:
    """Lines dropped by every handler of this process (what /metrics reports)."""

    lock = threading.Lock()
    count = 0


def dropped_lines() -> int:
    """How many access-log lines this process dropped because its buffer was full."""
    with _Dropped.lock:
        return _Dropped.count


class BatchingHandler(logging.Handler):
    """Buffer formatted lines; a daemon thread writes them every ``interval`` seconds.

    At most ``max_pending`` lines wait; more are dropped and counted (``dropped``).
    :meth:`close` writes what is left, so a graceful stop loses nothing (unless the
    stream has been blocked for 5 s, as a pipe nobody reads: then it lets go).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float = 0.05,
        owns_stream: bool,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__()
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigError("access_log_buffer", f"must be an integer >= 1 (got {max_pending!r})")
        self._stream = stream
        self._owns_stream = owns_stream
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: deque[str] = deque()
        self._stop = threading.Event()
        self._interval = interval
        self._writer = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.add_line(line)

    def add_line(self, line: str) -> None:
        """Queue one line as it is (what :meth:`emit` does with a record's text)."""
        if len(self._pending) >= self.max_pending:  # the writer is behind: drop, count
            self.dropped += 1
            with _Dropped.lock:
                _Dropped.count += 1
            return
        self._pending.append(line)

    def _drain(self) -> None:
        lines = []
        while self._pending:
            lines.append(self._pending.popleft())
        if lines:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._drain()

    def close(self) -> None:
        self._stop.set()
        self._writer.join(timeout=5)
        if not self._writer.is_alive():  # else it is stuck writing (a full pipe): let go
            self._drain()
        if self._owns_stream:
            self._stream.close()
        super().close()


_PLAIN = logging.Formatter("%(message)s")  # the sink's own: a record's text, as it is


def plain_sink(logger: logging.Logger) -> BatchingHandler | None:
    """The logger's one handler, if it is the command line's sink as configured (no
    filters, the plain format): then a line can be queued without a log record.

    A record costs more than the rest of the line's work (the caller's frame looked
    up, the time, thread and process noted, then formatted back to the same text):
    about a tenth of the gateway's requests/s under load. Any other handler, filter
    or format gets records as usual.
    """
    handlers = logger.handlers
    if len(handlers) != 1 or logger.filters:
        return None
    handler = handlers[0]
    if type(handler) is not BatchingHandler or handler.filters or handler.formatter is not _PLAIN:
        return None
    return handler if handler.level <= logging.INFO else None


def configure_access_log(
    target: str, *, max_pending: int = DEFAULT_MAX_PENDING
) -> BatchingHandler | None:
    """Send the access log to ``target``: a file (appended), ``-`` (stderr) or ``off``;
    at most ``max_pending`` lines wait to be written.

    Returns the handler (close it on shutdown to write what is buffered), or ``None``.

    Raises:
        ConfigError: the file cannot be opened for appending.
    """
    if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
        raise ConfigError("access_log_buffer", f"must be an integer >= 1 (got {max_pending!r})")
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    if target == "off":
        logger.setLevel(logging.WARNING)  # the gateway then skips building the lines
        return None
    if target == "-":
        handler = BatchingHandler(sys.stderr, owns_stream=False, max_pending=max_pending)
    else:
        try:
            stream = Path(target).open("a", encoding="utf-8")  # noqa: SIM115 (the handler closes it)
        except OSError as err:
            raise ConfigError("access_log", f"cannot append to {target}: {err}") from err
        handler = BatchingHandler(stream, owns_stream=True, max_pending=max_pending)
    handler.setFormatter(_PLAIN)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler
