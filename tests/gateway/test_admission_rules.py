"""The admission rules on their own: what a target, headers and a body must be to pass.

Besides the listed cases, a property: any target admitted has one shape for every
reader, whether it decodes percent-escapes once or twice, folds Unicode (NFKC) or turns
backslashes into slashes, as frameworks, file systems and proxies variously do: the
same segments, none of them a dot segment, none empty. Generated targets mix exactly
the characters attacks are made of.
"""

from __future__ import annotations

import codecs
import posixpath
import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmagentos.exceptions import ConfigError, GatewayError
from llmagentos.gateway.admission import (
    AdmissionLimits,
    check_headers,
    check_target,
    check_target_fully,
    is_json_type,
    read_json_body,
)

LIMITS = AdmissionLimits()


@pytest.mark.parametrize(
    "target",
    ["/taxi/v1/agent/step", "/taxi", "/taxi/", "/", "/taxi/v1/sessions/acme%3As1/qtable",
     "/taxi/v1/sessions/a.b/qtable", "/taxi/v1/sessions/..a/x", "/taxi/v1/sessions/a../x",
     "/taxi/v1/sessions/%41%42", "/svc/caf%C3%A9", "/svc/a%20b"],
)  # fmt: skip
def test_plain_targets_pass(target: str) -> None:
    check_target(target.encode(), b"", LIMITS)


def test_the_query_is_checked_for_controls_only() -> None:
    check_target(b"/a", b"x=%2e%2e/%2f&y=..", LIMITS)  # the query names no resource
    with pytest.raises(GatewayError) as caught:
        check_target(b"/a", b"x=\x00", LIMITS)
    assert caught.value.field == "query"


def test_the_limits_are_settings() -> None:
    tight = AdmissionLimits(max_target_bytes=20, max_segment_chars=4)
    with pytest.raises(GatewayError) as caught:
        check_target(b"/abcde", b"", tight)
    assert caught.value.status == 400 and "over 4" in str(caught.value)
    with pytest.raises(GatewayError) as caught:
        check_target(b"/a", b"q" * 20, tight)
    assert caught.value.status == 414
    with pytest.raises(ConfigError):
        AdmissionLimits(max_id_chars=0)


def test_repeated_single_headers_are_refused() -> None:
    check_headers([(b"accept", b"a"), (b"accept", b"b"), (b"content-type", b"x")])
    for name in (b"content-type", b"Authorization", b"x-api-key"):
        with pytest.raises(GatewayError) as caught:
            check_headers([(name, b"1"), (name.upper(), b"2")])
        assert caught.value.field == name.lower().decode()


@pytest.mark.parametrize(
    ("content_type", "json"),
    [("application/json", True), ("Application/JSON", True), ("APPLICATION/JSON;;", True),
     ("application/json; charset=utf-8", True), ("application/problem+json", True),
     ("application/vnd.x+JSON; v=1", True), ("text/plain", False), ("json", False),
     ("application/jsonx", False), ("text/json", False), (None, False), ("", False),
     ('"application/json"', False)],
)  # fmt: skip
def test_json_media_types_are_told_as_fastapi_tells_them(
    content_type: str | None, json: bool
) -> None:
    assert is_json_type(content_type) is json


def test_bodies() -> None:
    def read(body: bytes, content_type: str | None = "application/json") -> object:
        return read_json_body(body, content_type=content_type, content_encoding=None, limits=LIMITS)

    assert read(b'{"session": "s1"}') == {"session": "s1"}
    assert read(b"") is None
    assert read(b"not json", "text/plain") is None  # nobody reads it as JSON
    assert read(b'{"session": "s1"}', None) == {"session": "s1"}  # untyped JSON is checked
    assert read('{"session": "s1"}'.encode("utf-16")) == {"session": "s1"}  # as json.loads does
    for body, content_type, field in [
        (b"{broken", "application/json", "body"),
        (b'{"a": 1, "a": 2}', "text/plain", "body"),
        (b'{"x": {"a": 1, "a": 2}}', "application/json", "body"),
        (b'{"session": "' + b"s" * 129 + b'"}', "application/json", "body.session"),
        (b"[" * 50_000 + b"]" * 50_000, "application/json", "body"),
        (b'{"session": "\\ud800"}', "application/json", "body.session"),  # no UTF-8 form
        (b'{"session": "a\\udfff"}', None, "body.session"),
        # What json.loads reads as JSON after a byte-order mark, or in UTF-16, untyped:
        (codecs.BOM_UTF8 + b'{"a": 1, "a": 2}', "text/plain", "body"),
        (('{"session": "' + "s" * 129 + '"}').encode("utf-16"), None, "body.session"),
        ('{"a": 1, "a": 2}'.encode("utf-16-be"), None, "body"),
    ]:
        with pytest.raises(GatewayError) as caught:
            read(body, content_type)
        assert (caught.value.status, caught.value.field) == (400, field), body[:40]
    with pytest.raises(GatewayError) as caught:
        read_json_body(b"{}", content_type="application/json", content_encoding="gzip",
                       limits=LIMITS)  # fmt: skip
    assert caught.value.status == 415


_PIECES = st.sampled_from(
    ["a", "b", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", "/", "%25",
     "%252e", "%00", "%0a", "%ef%bc%8e", "%ef%bc%8f", "%c0%ae", "%e2%80%ae", "%", "%2",
     "%41", "~", ";", ":", "%3A", "-", "_"]
)  # fmt: skip


def _readings(path: str) -> list[str]:
    """What various readers make of a path."""
    once = unquote(path, errors="strict")
    twice = unquote(once, errors="strict")
    return [once, twice, unicodedata.normalize("NFKC", once), once.replace("\\", "/")]


def _admitted(target: str) -> bool:
    try:
        check_target(target.encode(), b"", LIMITS)
    except GatewayError:
        return False
    return True


@settings(max_examples=3000, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=8))
def test_an_admitted_target_has_one_shape_for_every_reader(pieces: list[str]) -> None:
    target = "/svc/" + "".join(pieces)
    if not _admitted(target):
        return
    for reading in _readings(target):
        assert reading.count("/") == target.count("/"), reading  # no hidden segment
        trailing = "/" if reading.endswith("/") else ""
        assert posixpath.normpath(reading) + trailing == reading, reading  # no dot, no //
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in reading)


def _verdict(check: object, raw: bytes, query: bytes, limits: AdmissionLimits) -> str | None:
    try:
        check(raw, query, limits)  # type: ignore[operator]
    except GatewayError as err:
        return f"{err.status} {err.field}"
    return None


_RAW_PIECES = st.sampled_from(
    [b"a", b"Z9", b".", b"..", b"...", b"/", b"//", b"%2e", b"%", b"\\", b"\x00", b"\x7f",
     b" ", b"\xc3\xa9", b"~", b"-", b"@", b"!", b"?", b"#", b"x" * 5]
)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(_RAW_PIECES, max_size=10), st.sampled_from([b"", b"q=1", b"q=\x00", b"a b"]),
    st.integers(min_value=1, max_value=6),
)  # fmt: skip
def test_the_quick_match_admits_only_what_the_full_rules_admit(
    pieces: list[bytes], query: bytes, segment_chars: int
) -> None:
    """The gateway's quick match for plain targets never admits what the rules one by
    one refuse, and refuses nothing they admit (it only passes the rest on to them)."""
    limits = AdmissionLimits(max_segment_chars=segment_chars)
    raw = b"/" + b"".join(pieces)
    assert _verdict(check_target, raw, query, limits) == _verdict(
        check_target_fully, raw, query, limits
    )
