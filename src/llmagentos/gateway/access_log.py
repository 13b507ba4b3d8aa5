"""Where the gateway's access log goes: one JSON line per proxied request.

The gateway logs to the ``llmagentos.gateway.access`` logger, so any logging handler
can take the lines. The command line's sink batches them: a request only appends its
line to a buffer, and a background thread writes what has gathered every 50 ms in one
write. So neither a slow disk nor a per-line thread wake-up stalls a request.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from pathlib import Path
from typing import TextIO

from llmagentos.exceptions import ConfigError

__all__ = ["ACCESS_LOGGER", "BatchingHandler", "configure_access_log"]

ACCESS_LOGGER = "llmagentos.gateway.access"


class BatchingHandler(logging.Handler):
    """Buffer formatted lines; a daemon thread writes them every ``interval`` seconds.

    :meth:`close` writes what is left, so a graceful stop loses nothing (unless the
    stream has been blocked for 5 s, as a pipe nobody reads: then it lets go).
    """

    def __init__(self, stream: TextIO, *, interval: float = 0.05, owns_stream: bool) -> None:
        super().__init__()
        self._stream = stream
        self._owns_stream = owns_stream
        self._pending: deque[str] = deque()
        self._stop = threading.Event()
        self._interval = interval
        self._writer = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record))
        except Exception:
            self.handleError(record)

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


def configure_access_log(target: str) -> BatchingHandler | None:
    """Send the access log to ``target``: a file (appended), ``-`` (stderr) or ``off``.

    Returns the handler (close it on shutdown to write what is buffered), or ``None``.

    Raises:
        ConfigError: the file cannot be opened for appending.
    """
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    if target == "off":
        logger.setLevel(logging.WARNING)  # the gateway then skips building the lines
        return None
    if target == "-":
        handler = BatchingHandler(sys.stderr, owns_stream=False)
    else:
        try:
            stream = Path(target).open("a", encoding="utf-8")  # noqa: SIM115 (the handler closes it)
        except OSError as err:
            raise ConfigError("access_log", f"cannot append to {target}: {err}") from err
        handler = BatchingHandler(stream, owns_stream=True)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler
