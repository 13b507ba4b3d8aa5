"""What the gateway lets through: only requests it reads exactly as the service will.

A proxy that forwards what it cannot attribute lets the two sides disagree: the
gateway checks one path or body, the replica executes another. So every request is
admitted here before anything else looks at it, and refused (4xx, never forwarded)
when its target or body could mean two things:

- the target (``check_target``) is an absolute path of visible ASCII, at most
  ``max_target_bytes`` long; no dot segments (``.``/``..``, ``%2e`` in any case and mix,
  full-width look-alikes), no encoded slash (``%2f``), no backslash (raw or ``%5c``), no
  empty segment (``//``), no control character or NUL (raw or encoded), no malformed or
  double percent-encoding (``%252e``), no segment over ``max_segment_chars`` once
  decoded. Like Envoy with ``path_with_escaped_slashes_action: REJECT_REQUEST`` and
  ``normalize_path`` refusing instead of rewriting: a rewrite would make the gateway and
  the replica disagree on which path was asked for.
- headers (``check_headers``): one ``Content-Type``, one credential header, at most;
  names and values of ASCII only. A byte 0x80-0xFF (``obs-text``, which the gateway
  and the replica read as Latin-1) would not reach the replica as sent: the hop's
  client writes header values as UTF-8, so one such byte would arrive as two.
- the body (``read_json_body``): a JSON media type (``application/json``,
  ``application/*+json``, compared as FastAPI does: the same ``email.message`` parser,
  case-insensitive, with parameters) must carry JSON (400 otherwise), uncompressed (415),
  without repeated member names; any body that parses as JSON, whatever its declared
  type, must have a ``session`` of at most ``max_id_chars`` characters and no repeated
  names either, since some services parse bodies whatever their type.

The service still enforces tenancy on what it executes; this only makes sure the
gateway never forwards a request it could not have checked.
"""

from __future__ import annotations

import codecs
import email.message
import functools
import json
import re
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from llmagentos.exceptions import ConfigError, GatewayError
from llmagentos.gateway.request_fields import header

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = [
    "AdmissionLimits",
    "AdmissionMiddleware",
    "admit_scope",
    "check_headers",
    "check_target",
    "is_json_type",
    "read_json_body",
]

_HEX = frozenset(b"0123456789abcdefABCDEF")
# A path of unreserved and sub-delimiter characters only (RFC 3986), no escape: what
# nearly every request is, checked without decoding.
_PLAIN = re.compile(rb"[A-Za-z0-9._~!$&'()*+,;=:@/-]*")
_VISIBLE = re.compile(rb"[\x21-\x7e]*")


@functools.lru_cache(maxsize=8)
def _plain_target(max_segment_chars: int) -> re.Pattern[bytes]:
    """A plain path (as ``_PLAIN``) whose segments are neither empty (but a trailing
    one), nor a dot segment, nor over ``max_segment_chars``: every rule of
    :func:`check_target` for such a path, in one match."""
    segment = rb"[A-Za-z0-9._~!$&'()*+,;=:@-]{1,%d}" % max_segment_chars
    return re.compile(rb"(?:/(?!\.\.?(?:/|\Z))" + segment + rb")*/?")


# Headers that must not be repeated: two values would let the gateway and the replica
# each read a different one.
_SINGLE = frozenset({b"content-type", b"content-length", b"authorization", b"x-api-key", b"host"})
# Unicode categories never valid in a path: controls, format characters (bidi
# overrides, zero-width joiners), line and paragraph separators, surrogates, unassigned.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """How long a request target, a path segment and a ``session`` id may be.

    The defaults fit the module services: their ids are at most 128 characters.
    """

    max_target_bytes: int = 4096
    max_segment_chars: int = 128
    max_id_chars: int = 128

    def __post_init__(self) -> None:
        for name in ("max_target_bytes", "max_segment_chars", "max_id_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, f"must be an integer >= 1 (got {value!r})")


def _refuse(detail: str, field: str = "path", status: int = 400) -> GatewayError:
    return GatewayError(status, detail, field=field)


def _decode(segment: bytes, index: int) -> str:
    """A raw path segment percent-decoded once, as the replica will decode it."""
    out = bytearray()
    i = 0
    while i < len(segment):
        byte = segment[i]
        if byte == 0x25:  # '%'
            pair = segment[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise _refuse(f"path segment {index} has a malformed percent-encoding")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _refuse(f"path segment {index} does not decode to UTF-8") from err


def _check_segment(decoded: str, index: int, limits: AdmissionLimits) -> None:
    if len(decoded) > limits.max_segment_chars:
        raise _refuse(f"path segment {index} is over {limits.max_segment_chars} characters")
    if decoded in (".", ".."):
        raise _refuse(f"path segment {index} is a dot segment ({decoded!r})")
    if "/" in decoded:
        raise _refuse(f"path segment {index} has an encoded slash (%2F)")
    if "\\" in decoded:
        raise _refuse(f"path segment {index} has a backslash")
    for char in decoded:
        if unicodedata.category(char) in _BAD_CATEGORIES:
            raise _refuse(f"path segment {index} has a control character (U+{ord(char):04X})")
    if "%" in decoded and _has_escape(decoded):
        # Decoded twice by some later layer, %252e becomes a dot: refused, as IIS does.
        raise _refuse(f"path segment {index} is percent-encoded twice")
    if not decoded.isascii():
        # Full-width dots and slashes (U+FF0E, U+FF0F) turn into '.' and '/' under NFKC,
        # which some frameworks and file systems apply.
        folded = unicodedata.normalize("NFKC", decoded)
        if folded in (".", "..") or "/" in folded or "\\" in folded:
            raise _refuse(f"path segment {index} looks like a dot segment or a slash")


def _has_escape(text: str) -> bool:
    """Does ``text`` still hold a ``%XX`` escape?"""
    hexdigits = "0123456789abcdefABCDEF"
    return any(
        char == "%" and len(text) >= i + 3 and all(c in hexdigits for c in text[i + 1 : i + 3])
        for i, char in enumerate(text)
    )


def check_target(raw_path: bytes, query: bytes, limits: AdmissionLimits) -> None:
    """Refuse a request target the gateway and a replica could read differently.

    Raises:
        GatewayError: 414 for a target over the limit, 400 (``field`` ``path`` or
            ``query``) naming what is wrong otherwise.
    """
    size = len(raw_path) + (len(query) + 1 if query else 0)
    if size > limits.max_target_bytes:
        raise _refuse(f"the request target is over {limits.max_target_bytes} bytes", status=414)
    if not raw_path.startswith(b"/"):
        raise _refuse("the request target must be an absolute path (origin-form)")
    if _plain_target(limits.max_segment_chars).fullmatch(raw_path) is not None and (
        not query or _VISIBLE.fullmatch(query) is not None
    ):
        return  # nearly every target, in two matches; the rest is checked (and named) below
    check_target_fully(raw_path, query, limits)


def check_target_fully(raw_path: bytes, query: bytes, limits: AdmissionLimits) -> None:
    """:func:`check_target` without its quick match: each rule in turn, the one broken
    named. (Exposed so tests can hold the quick match to it.)"""
    if not raw_path.startswith(b"/"):
        raise _refuse("the request target must be an absolute path (origin-form)")
    if _VISIBLE.fullmatch(raw_path) is None or b"\\" in raw_path:
        for position, byte in enumerate(raw_path):
            if not 0x21 <= byte <= 0x7E:
                detail = f"the path has a byte outside visible ASCII at {position} ({byte:#04x})"
                raise _refuse(detail)
            if byte == 0x5C:
                raise _refuse(f"the path has a backslash at {position}")
    if _VISIBLE.fullmatch(query) is None:
        for position, byte in enumerate(query):
            if not 0x21 <= byte <= 0x7E:
                raise _refuse(
                    f"the query has a byte outside visible ASCII at {position} ({byte:#04x})",
                    field="query",
                )
    segments = raw_path[1:].split(b"/")
    plain = _PLAIN.fullmatch(raw_path) is not None  # no escapes: each segment is itself
    for index, segment in enumerate(segments):
        if not segment:
            if index == len(segments) - 1:
                continue  # a trailing slash names no other resource
            raise _refuse(f"path segment {index} is empty (//)")
        if plain:
            if segment in (b".", b".."):
                raise _refuse(f"path segment {index} is a dot segment ({segment.decode()!r})")
            if len(segment) > limits.max_segment_chars:
                raise _refuse(f"path segment {index} is over {limits.max_segment_chars} characters")
            continue
        _check_segment(_decode(segment, index), index, limits)


#: Headers the gateway writes itself on the hop (hop.py): a malformed one the caller
#: sent is replaced (a ``traceparent`` starts a new trace, as W3C Trace Context asks),
#: never refused, so its bytes need not survive the hop.
_REWRITTEN = frozenset({b"traceparent", b"tracestate", b"x-request-id"})


def check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Refuse repeats of headers that must appear once (``Content-Type``, credentials),
    and any header forwarded as sent with a byte outside ASCII in its name or value.

    Raises:
        GatewayError: 400 naming the header.
    """
    seen: set[bytes] = set()
    for name, value in headers:
        if not (value.isascii() and name.isascii()) and name.lower() not in _REWRITTEN:
            field = name.decode("latin-1").lower()[:64]
            raise _refuse(
                f"the {field} header has a byte outside ASCII: it cannot reach the replica as sent",
                field=field,
            )
        lowered = name.lower()
        if lowered in _SINGLE:
            if lowered in seen:
                raise _refuse(f"the {lowered.decode()} header is repeated", field=lowered.decode())
            seen.add(lowered)


def _media_type(content_type: str) -> tuple[str, str]:
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_maintype(), message.get_content_subtype()


# Remembered: clients send a few content types again and again, and the email parser
# costs about a tenth of the gateway's own work on a request. Bounded, so many distinct
# values only cost what they always did.
@functools.lru_cache(maxsize=128)
def is_json_type(content_type: str | None) -> bool:
    """Is this ``Content-Type`` a JSON media type, as FastAPI decides it?

    ``application/json`` or ``application/<anything>+json``, compared case-insensitively
    with parameters allowed (``Application/JSON; charset=utf-8``).
    """
    if not content_type:
        return False
    maintype, subtype = _media_type(content_type)
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


class _Repeated(ValueError):
    """A JSON object names a member twice."""


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            # Parsers disagree on which repeat wins: the gateway must not guess.
            raise _Repeated(f"the member {key[:40]!r} is repeated")
        data[key] = value
    return data


#: The first bytes a JSON text can have (after whitespace).
_JSON_STARTS = frozenset(bytes([c]) for c in b'{["-0123456789tfn')
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_json_body(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
    limits: AdmissionLimits,
) -> Any:
    """The body's JSON value (``None`` when it is empty or not JSON), once checked.

    Raises:
        GatewayError: 415 for a compressed JSON body, 400 (``field`` ``body`` or
            ``body.session``) for a JSON-typed body that is not JSON, a repeated member
            name, nesting too deep, or a ``session`` over ``max_id_chars``.
    """
    if not body:
        return None
    declared = is_json_type(content_type)
    if not declared:
        head = body.lstrip(b" \t\r\n")
        # JSON in UTF-16 or -32, or after a byte-order mark, is JSON to json.loads
        # (and to some services): checked like any other.
        if head[:1] not in _JSON_STARTS and not head.startswith(_BOMS) and b"\0" not in head[:4]:
            return None  # cannot be JSON for anyone: not worth a failed parse
    if declared and content_encoding and content_encoding.strip().lower() != "identity":
        raise _refuse(
            f"a JSON body must be sent uncompressed (Content-Encoding: {content_encoding[:40]})",
            field="content-encoding",
            status=415,
        )
    try:
        data = json.loads(body, object_pairs_hook=_no_repeats)
    except _Repeated as err:
        raise _refuse(f"the body's JSON is ambiguous: {err}", field="body") from err
    except RecursionError as err:
        raise _refuse("the body's JSON is nested too deep", field="body") from err
    except ValueError as err:
        if declared:
            raise _refuse(f"the body is not JSON: {err}", field="body") from err
        return None  # not JSON for anyone: the service reads it as what it says it is
    if isinstance(data, dict):
        session = data.get("session")
        if isinstance(session, str):
            if len(session) > limits.max_id_chars:
                raise _refuse(
                    f"session is over {limits.max_id_chars} characters", field="body.session"
                )
            if not session.isascii() and not _encodable(session):
                raise _refuse("session holds a lone surrogate, not text", field="body.session")
    return data


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: ``refuse(scope, send, error)``: answer a request refused before routing.
Refuse = Callable[[Mapping[str, Any], Any, GatewayError], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body passed the size limit (answered 413)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as it (or its declared length) passes ``limit``.

    Read from the ASGI messages themselves: the proxy reads a body once, and
    Starlette's stream machinery costs more than the read on a small body.

    Raises:
        BodyTooLarge: past ``limit``.
        starlette.requests.ClientDisconnect: the client went away mid-body.
    """
    declared = header(request, "content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            from starlette.requests import ClientDisconnect  # here: an import is not free

            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            if not chunks:
                return bytes(chunk)
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


class AdmissionMiddleware:
    """Pure ASGI: every HTTP request's target and headers admitted before routing; a
    refusal is answered by ``refuse`` and goes no further."""

    def __init__(self, app: Any, *, limits: AdmissionLimits, refuse: Refuse) -> None:
        self.app = app
        self.limits = limits
        self.refuse = refuse

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            admit_scope(scope, self.limits)
        except GatewayError as err:
            await self.refuse(scope, send, err)
            return
        await self.app(scope, receive, send)


def admit_scope(scope: dict[str, Any], limits: AdmissionLimits) -> None:
    """Check an HTTP request's target and headers before it is routed.

    Raises:
        GatewayError: 4xx, naming what is wrong.
    """
    if not scope.get("raw_path"):  # optional in ASGI: then the decoded path, encoded
        scope["raw_path"] = quote(scope["path"]).encode("ascii")
    # The headers as admitted, and the only ones forwarded: uvicorn appends a chunked
    # body's trailers to its own list when they arrive, after these checks ran.
    scope["headers"] = list(scope["headers"])
    check_target(scope["raw_path"], scope.get("query_string", b""), limits)
    check_headers(scope["headers"])
