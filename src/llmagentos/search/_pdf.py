"""PDF to plain text with pypdf (extra ``[search]``): pages, the title, the outline.

Pages are joined by blank lines; the outline (bookmarks), when there is one, gives the
headings, each at the start of the page it points to.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

from llmagentos.exceptions import MissingExtraError

__all__ = ["PdfText", "pdf_to_text"]


@dataclass(frozen=True, slots=True)
class PdfText:
    """Per-page text, the document's title (``""`` if none) and its outline."""

    title: str
    pages: tuple[str, ...]
    outline: tuple[tuple[int, str, int], ...]  # (level, title, page index)


class PdfUnreadable(ValueError):
    """pypdf could not read the file (the loader turns this into a DocumentError)."""


def pdf_to_text(data: bytes) -> PdfText:
    """Extract the text of every page of the PDF in ``data``.

    Raises:
        MissingExtraError: pypdf is not installed.
        PdfUnreadable: the file is not a PDF pypdf can read, or is encrypted.
    """
    try:
        import pypdf
    except ImportError as err:
        raise MissingExtraError("PDF documents", "search", "pypdf") from err
    # A parser of untrusted bytes can fail in many ways (pypdf raises its own errors,
    # but also ValueError, KeyError, TypeError... on damaged files): all mean unreadable.
    # pypdf logs a warning for each flaw it works around; the loader reports a file it
    # cannot read, so those warnings would only say it twice.
    log = logging.getLogger("pypdf")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return _read(pypdf, data)
    finally:
        log.setLevel(level)


def _read(pypdf: Any, data: bytes) -> PdfText:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not _decrypts(reader):
            raise PdfUnreadable("encrypted PDF")
        pages = tuple((page.extract_text() or "").strip() for page in reader.pages)
        title = str((reader.metadata.title if reader.metadata else None) or "").strip()
    except PdfUnreadable:
        raise
    except Exception as err:
        raise PdfUnreadable(f"unreadable PDF ({type(err).__name__}: {err})") from err
    return PdfText(title, pages, _outline(reader))


def _decrypts(reader: Any) -> bool:
    """Whether the PDF opens with the empty password (many "encrypted" PDFs do)."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # a wrong or unsupported scheme: just not decryptable here
        return False


def _outline(reader: Any) -> tuple[tuple[int, str, int], ...]:
    """The bookmarks as (level, title, page); a damaged outline is ignored, not fatal."""
    found: list[tuple[int, str, int]] = []

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            page = reader.get_destination_page_number(item)
            title = str(getattr(item, "title", "") or "").strip()
            if title and page is not None and page >= 0:
                found.append((level, title, int(page)))

    try:
        walk(list(reader.outline), 1)
    except Exception:  # the outline is a nicety: the text is still good without it
        return ()
    return tuple(found)
