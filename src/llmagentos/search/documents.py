"""Documents: a file read into typed text with its title, headings and fingerprint.

:func:`load_document` reads ``.txt``, ``.md``, ``.html``/``.htm`` and ``.pdf`` files
(PDF needs the ``[search]`` extra) into a :class:`Document`. A file that cannot be read
or parsed raises :class:`~llmagentos.exceptions.DocumentError` naming its path, so an
indexer reports it and goes on with the next file. :func:`find_documents` lists a
folder's supported files.

Every loader yields plain text plus :class:`Heading` s at character offsets into that
text, which is what the chunker splits on. Markdown keeps its source text (headings,
lists and emphasis read well as they are); HTML becomes paragraphs separated by blank
lines; a PDF is its pages' text separated by blank lines.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmagentos.exceptions import DocumentError
from llmagentos.search._html import html_charset, html_to_text
from llmagentos.search._pdf import PdfUnreadable, pdf_to_text
from llmagentos.search._text import BinaryContent, decode_text

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MEDIA_TYPES",
    "Document",
    "Heading",
    "find_documents",
    "load_document",
    "parse_document",
]

MEDIA_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
"""The file suffixes the loaders read (lower case) and the media type of each."""

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
"""Larger files are refused: one stray disk image must not exhaust memory mid-index."""


@dataclass(frozen=True, slots=True)
class Heading:
    """A heading of a document: its level (1 = top), its text, where it starts."""

    level: int
    title: str
    offset: int  # character offset of the heading in Document.text


@dataclass(frozen=True, slots=True)
class Document:
    """One loaded file.

    Attributes:
        path: the file on disk.
        source: its identity in an index: the path relative to the indexed folder, in
            POSIX form (the path itself when loaded without a root).
        title: ``<title>``, a Markdown front-matter ``title`` or first ``#`` heading, a
            PDF's metadata title; else the file name without its suffix.
        text: the plain text the chunker splits.
        media_type: ``text/plain``, ``text/markdown``, ``text/html`` or ``application/pdf``.
        sha256: hex digest of the file's bytes.
        mtime_ns: modification time when read (``os.stat``), in nanoseconds.
        size: the file's size in bytes.
        headings: in order of offset.
    """

    path: Path
    source: str
    title: str
    text: str
    media_type: str
    sha256: str
    mtime_ns: int
    size: int
    headings: tuple[Heading, ...] = ()

    @property
    def mtime(self) -> float:
        """Modification time in seconds since the epoch."""
        return self.mtime_ns / 1e9


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a parser makes of a file's bytes."""

    title: str
    text: str
    headings: tuple[Heading, ...]


def source_of(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` in POSIX form (``path`` itself without a root)."""
    if root is None:
        return path.as_posix()
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def load_document(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> Document:
    """Read and parse one file; ``root`` (the indexed folder) makes ``source`` relative.

    Raises:
        DocumentError: unsupported suffix, unreadable file, too large, binary content,
            or a PDF that pypdf cannot read or that has no extractable text.
        MissingExtraError: a PDF without pypdf installed.
    """
    file = Path(path)
    media_type = MEDIA_TYPES.get(file.suffix.lower())
    if media_type is None:
        raise DocumentError(str(file), f"unsupported type {file.suffix or '(no suffix)'!r}")
    try:
        stat = file.stat()
        if stat.st_size > MAX_DOCUMENT_BYTES:
            raise DocumentError(str(file), f"too large ({stat.st_size} bytes)")
        data = file.read_bytes()
    except OSError as err:
        raise DocumentError(str(file), f"cannot read: {err.strerror or err}") from err
    parsed = parse_document(data, media_type, path=str(file))
    return Document(
        path=file,
        source=source_of(file, None if root is None else Path(root)),
        title=parsed.title or file.stem,
        text=parsed.text,
        media_type=media_type,
        sha256=hashlib.sha256(data).hexdigest(),
        mtime_ns=stat.st_mtime_ns,
        size=len(data),
        headings=parsed.headings,
    )


def parse_document(data: bytes, media_type: str, *, path: str = "<bytes>") -> Parsed:
    """Parse a file's bytes by media type (``path`` only names it in errors).

    Raises:
        DocumentError: as :func:`load_document`.
    """
    try:
        if media_type == "text/plain":
            return Parsed("", decode_text(data), ())
        if media_type == "text/markdown":
            return _markdown(decode_text(data))
        if media_type == "text/html":
            return _html(decode_text(data, encoding=html_charset(data)))
        if media_type == "application/pdf":
            return _pdf(data)
    except (BinaryContent, PdfUnreadable) as err:
        raise DocumentError(path, str(err)) from err
    raise DocumentError(path, f"unsupported media type {media_type!r}")


def find_documents(root: str | os.PathLike[str]) -> Iterator[Path]:
    """The supported files under ``root``, sorted; hidden files and folders skipped.

    Symbolic links to folders are not followed (no cycles); links to files are listed.

    Raises:
        DocumentError: ``root`` is not a folder.
    """
    top = Path(root)
    if not top.is_dir():
        raise DocumentError(str(top), "not a folder")
    found: list[Path] = []
    for folder, dirs, files in os.walk(top, followlinks=False):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        found.extend(
            Path(folder, name)
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in MEDIA_TYPES
        )
    yield from sorted(found, key=lambda file: file.as_posix())


# --- Markdown ------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _markdown(source: str) -> Parsed:
    title = ""
    match = _FRONT_MATTER.match(source)
    if match:
        title = _front_matter_title(match.group(1))
        source = source[match.end() :]
    headings = tuple(_markdown_headings(source))
    if not title:
        title = next((h.title for h in headings if h.level == 1), "")
    return Parsed(title, source, headings)


def _front_matter_title(block: str) -> str:
    try:
        meta = yaml.safe_load(block)
    except yaml.YAMLError:
        return ""  # not front matter after all: the file is still good Markdown
    value = meta.get("title") if isinstance(meta, dict) else None
    return str(value).strip() if value is not None else ""


def _markdown_headings(text: str) -> Iterator[Heading]:
    """ATX (``# Title``) and setext (``Title`` over ``===``) headings outside code fences."""
    fence: str | None = None
    offset = 0
    previous: tuple[int, str] | None = None  # offset and text of a paragraph line
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\n")
        opener = _FENCE.match(bare)
        if fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                fence = None
        elif opener:
            fence = opener.group(1)
            previous = None
        elif atx := _ATX.match(bare):
            yield Heading(len(atx.group(1)), (atx.group(2) or "").strip(), offset)
            previous = None
        elif previous is not None and (setext := _SETEXT.match(bare)):
            yield Heading(1 if setext.group(1)[0] == "=" else 2, previous[1], previous[0])
            previous = None
        elif bare.strip():
            previous = (offset, bare.strip()) if previous is None else previous
        else:
            previous = None
        offset += len(line)


# --- HTML and PDF --------------------------------------------------------------------


def _join_blocks(blocks: list[tuple[int, str]]) -> tuple[str, tuple[Heading, ...]]:
    """Blocks joined by blank lines, with a heading for each heading block."""
    parts: list[str] = []
    headings: list[Heading] = []
    offset = 0
    for level, text in blocks:
        if level:
            headings.append(Heading(level, text, offset))
        parts.append(text)
        offset += len(text) + 2
    return "\n\n".join(parts), tuple(headings)


def _html(markup: str) -> Parsed:
    extracted = html_to_text(markup)
    text, headings = _join_blocks(list(extracted.blocks))
    title = extracted.title or next((h.title for h in headings if h.level == 1), "")
    return Parsed(title, text, headings)


def _pdf(data: bytes) -> Parsed:
    extracted = pdf_to_text(data)
    starts: list[int] = []
    offset = 0
    for page in extracted.pages:
        starts.append(offset)
        offset += len(page) + 2
    text = "\n\n".join(extracted.pages)
    if extracted.pages and not text.strip():
        # A scanned PDF: indexing it would silently find nothing, so say so.
        raise PdfUnreadable(f"no extractable text in {len(extracted.pages)} page(s)")
    headings = tuple(
        Heading(level, title, starts[page])
        for level, title, page in sorted(extracted.outline, key=lambda item: item[2])
        if page < len(starts)
    )
    return Parsed(extracted.title, text, headings)
