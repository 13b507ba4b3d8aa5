"""Bytes to text: BOM-aware UTF-8 first, Windows-1252 for the rest, binary refused.

Plain text, Markdown and HTML files share this rule. Old corpora (the Lee corpus among
them) are Latin-1 or Windows-1252, so a file that is not UTF-8 is not refused for that;
what is refused is content that is not text at all: NUL bytes, or more control
characters than any text file has.
"""

from __future__ import annotations

import codecs

__all__ = ["BinaryContent", "decode_text"]

# C0 controls other than tab, newline, vertical tab, form feed and carriage return.
_CONTROLS = frozenset(range(32)) - {9, 10, 11, 12, 13}
_MAX_CONTROL_SHARE = 0.01  # random bytes have ~11% of these; text has next to none


class BinaryContent(ValueError):
    """The bytes are not text (the loader turns this into a DocumentError)."""


def decode_text(data: bytes, *, encoding: str | None = None) -> str:
    """Decode ``data`` as text; ``encoding`` (e.g. from an HTML ``<meta charset>``) first.

    Raises:
        BinaryContent: NUL bytes, or over 1% control characters.
    """
    if b"\x00" in data and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BinaryContent("binary content (NUL bytes)")
    text = _decode(data, encoding)
    if text:
        controls = sum(1 for char in text if ord(char) in _CONTROLS)
        if controls > _MAX_CONTROL_SHARE * len(text):
            raise BinaryContent(f"binary content ({controls} control characters)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes, encoding: str | None) -> str:
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(name)
            except UnicodeDecodeError as err:
                raise BinaryContent(f"not valid {name}: {err.reason}") from err
    candidates = [encoding] if encoding else []
    candidates.append("utf-8")
    for name in candidates:
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        # The five bytes cp1252 leaves undefined: Latin-1 maps every byte.
        return data.decode("latin-1")
