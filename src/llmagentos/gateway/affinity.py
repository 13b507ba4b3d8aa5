"""Session affinity: every call of a session goes to the same replica.

A stateful service (a Q-table, an environment per session) can run several replicas
with no shared store when each session stays on one of them. Rendezvous hashing
(highest random weight) picks it: each replica scores ``hash(session, replica)`` and
the highest available one wins. Adding or removing a replica moves only the sessions
that scored highest on it; when the chosen one is down, the session's next-highest
replica takes it (its state starts over there unless the service has a shared store).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from llmagentos.gateway.balancer import Replica
from llmagentos.gateway.clock import Clock, monotonic

__all__ = ["SessionAffinity", "session_key"]

_SESSIONS = "/v1/sessions/"


def _score(session: str, url: str) -> int:
    digest = hashlib.blake2b(f"{session}\0{url}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class SessionAffinity:
    """Pick a session's replica by rendezvous hashing among the available ones."""

    def __init__(self, *, clock: Clock = monotonic) -> None:
        self._clock = clock

    def pick(
        self, replicas: Sequence[Replica], session: str, *, available_only: bool = True
    ) -> Replica | None:
        """The (available) replica that scores highest for ``session``, or ``None``."""
        now = self._clock()
        available = [r for r in replicas if r.available(now) or not available_only]
        if not available:
            return None
        return max(available, key=lambda r: _score(session, r.url))


def session_key(route: str, data: Any) -> str | None:
    """The session a request belongs to: a ``/v1/sessions/<id>`` path (``route`` decoded),
    or the ``session`` string of its JSON body (``data``, already parsed by admission);
    ``None`` when it names none. The gateway adds the caller's tenant to it, so two
    tenants' ``s1`` are two sessions here too."""
    if route.startswith(_SESSIONS):
        return route[len(_SESSIONS) :].partition("/")[0] or None
    session = data.get("session") if isinstance(data, dict) else None
    return session if isinstance(session, str) else None
