"""W3C trace context read strictly: what a client sends is checked before anyone uses it.

``traceparent`` and ``tracestate`` arrive from anyone who can reach a server, so they
are parsed here by the rules of W3C Trace Context (level 1) without OpenTelemetry and
without logging: a malformed header is simply not there, a ``tracestate`` is kept only
beside a valid ``traceparent``, and one longer than 512 characters is cut the way the
specification suggests (its longest members first, then from the end).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_TRACESTATE", "TraceParent", "clean_trace_headers", "clean_tracestate"]

MAX_TRACESTATE = 512
_MAX_MEMBERS = 32
_LONG_MEMBER = 128
_HEX = re.compile(r"[0-9a-f]+")
_KEY = re.compile(
    r"[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}"
)
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid ``traceparent``: the caller's trace, its span and whether it samples."""

    trace_id: str
    span_id: str
    sampled: bool

    @classmethod
    def parse(cls, value: str) -> TraceParent | None:
        """The header's trace, or ``None`` when it breaks any rule of the format."""
        value = value.strip(" \t")
        version, trace_id, span_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
        if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
            return None
        if not all(_HEX.fullmatch(part) for part in (version, trace_id, span_id, flags)):
            return None
        if version == "ff" or (version == "00" and len(value) != 55):
            return None
        if len(value) > 55 and value[55] != "-":  # a later version may add fields, after a dash
            return None
        if trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        return cls(trace_id, span_id, bool(int(flags, 16) & 1))

    def header(self, span_id: str | None = None) -> str:
        """This trace as a version-00 header, with ``span_id`` as the parent when given."""
        return f"00-{self.trace_id}-{span_id or self.span_id}-{'01' if self.sampled else '00'}"


def clean_tracestate(values: Iterable[str]) -> str | None:
    """The ``tracestate`` headers as one valid list, or ``None``.

    Repeated headers are one list. A member that breaks the format, a key named twice or
    more than 32 members make the whole list invalid (it cannot be trusted in part); a
    list over 512 characters loses members longer than 128 characters, then members
    from the end, until it fits.
    """
    members: list[str] = []
    keys: set[str] = set()
    for value in values:
        for raw in value.split(","):
            member = raw.strip(" \t")
            if not member:
                continue
            key, sep, item = member.partition("=")
            if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(item) or key in keys:
                return None
            keys.add(key)
            members.append(member)
    if not members or len(members) > _MAX_MEMBERS:
        return None
    if len(",".join(members)) > MAX_TRACESTATE:
        members = [m for m in members if len(m) <= _LONG_MEMBER]
        while members and len(",".join(members)) > MAX_TRACESTATE:
            members.pop()
    return ",".join(members) or None


def clean_trace_headers(
    headers: Iterable[tuple[str, str]],
) -> tuple[TraceParent | None, str | None]:
    """The valid trace context among ``headers`` (names compared case-insensitively).

    More than one ``traceparent`` is no trace at all: which one the caller meant cannot
    be told. ``tracestate`` counts only beside a valid ``traceparent``.
    """
    parents: list[str] = []
    states: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "traceparent":
            parents.append(value)
        elif lowered == "tracestate":
            states.append(value)
    parent = TraceParent.parse(parents[0]) if len(parents) == 1 else None
    if parent is None:
        return None, None
    return parent, clean_tracestate(states)
