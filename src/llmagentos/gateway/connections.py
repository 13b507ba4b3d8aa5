"""The hop's pool of connections to replicas: none is written to once its replica has
closed it, and a request that must go out again gets a new one.

A replica closes a keep-alive connection that has been idle for its own timeout
(uvicorn's ``timeout_keep_alive``: 5 s) without a ``Connection: close`` first. The hop
keeps idle connections for less than that (``upstream_idle_timeout``, upstream.py), so
it lets them go first; this module covers what remains:

- aiohttp hands out a pooled connection until the event loop has read the replica's
  close, which a busy turn of the loop delays. So :class:`HopConnector` polls a pooled
  connection's socket before handing it out (:func:`peer_closed`, the default hop's
  rule too), and a readable one is closed unwritten and the next one taken. No byte
  of the request was sent on it, whatever its method.
- a close that crosses the request on the wire cannot be told from a replica that read
  the request and then failed. Only a request that may run twice is sent again then,
  once, on a new connection (:class:`HopAttempt`, read by the hop client).
"""

from __future__ import annotations

import weakref
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from llmagentos.gateway.http1_hop import peer_closed

__all__ = ["ATTEMPT", "HopAttempt", "HopConnector", "peer_closed"]


@dataclass(slots=True)
class HopAttempt:
    """The connections one request to a replica took (set by the hop client)."""

    #: take no pooled connection: the request goes out again after a closed one
    fresh: bool = False
    #: the last connection taken came from the pool
    reused: bool = False
    #: connections taken so far (aiohttp's own second try on an idempotent method is one)
    taken: int = 0


#: The request in progress in this task, if the hop client set one.
ATTEMPT: ContextVar[HopAttempt | None] = ContextVar("llmagentos_hop_attempt", default=None)


class HopConnector(aiohttp.TCPConnector):
    """aiohttp's connector, but a pooled connection is polled before it is handed out
    (:func:`peer_closed`), and a request marked ``fresh`` or taking a second connection
    gets a new one."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._handed_out: weakref.WeakSet[Any] = weakref.WeakSet()

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        attempt = ATTEMPT.get()
        fresh = attempt is not None and (attempt.fresh or attempt.taken > 0)
        while True:
            conn = await super().connect(req, traces, timeout)
            protocol = conn.protocol
            reused = protocol in self._handed_out
            if not reused or not (fresh or peer_closed(protocol)):
                break
            conn.close()  # never written to: the replica saw nothing of this request
        if protocol is not None:
            self._handed_out.add(protocol)
        if attempt is not None:
            attempt.taken += 1
            attempt.reused = reused
        return conn
