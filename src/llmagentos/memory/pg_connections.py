"""The Postgres store's connections: psycopg imported lazily, URLs without passwords in
messages, and a small pool (``psycopg_pool`` is not a dependency)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from llmagentos.exceptions import MemoryBackendError, MissingExtraError

if TYPE_CHECKING:
    import psycopg

__all__ = ["Pool", "import_psycopg", "redacted"]


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as err:
        raise MissingExtraError("the Postgres memory store", "postgres", "psycopg[binary]") from err
    return psycopg


class Pool:
    """At most ``size`` connections, handed to one thread at a time (a broken one is
    dropped and replaced on the next request)."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], size: int) -> None:
        self._connect, self._size = connect, size
        self._idle: list[psycopg.Connection[Any]] = []
        self._made = 0
        self._closed = False
        self._cond = threading.Condition()

    @contextmanager
    def connection(self, backend: str) -> Iterator[psycopg.Connection[Any]]:
        conn: psycopg.Connection[Any] | None = None
        with self._cond:
            while True:
                if self._closed:
                    raise MemoryBackendError("the store is closed", backend=backend)
                if self._idle:
                    conn = self._idle.pop()
                    break
                if self._made < self._size:
                    self._made += 1
                    break
                if not self._cond.wait(timeout=60.0):
                    raise MemoryBackendError(
                        f"no free connection in 60 s (pool_size={self._size})", backend=backend
                    )
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                with self._cond:
                    self._made -= 1
                    self._cond.notify()
                raise
        try:
            yield conn
        finally:
            broken = conn.closed or conn.broken or conn.info.transaction_status != 0
            with self._cond:
                if broken or self._closed:
                    self._made -= 1
                    conn.close()
                else:
                    self._idle.append(conn)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for conn in self._idle:
                conn.close()
            self._idle.clear()
            self._cond.notify_all()
