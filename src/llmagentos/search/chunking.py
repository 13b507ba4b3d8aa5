"""Chunking: a document split into passages at headings and paragraphs, with keys.

The rule (:func:`chunk_document`):

1. The headings cut the text into sections; a chunk never spans two sections, and each
   chunk carries the path of headings above it (``("Install", "From source")``).
2. Within a section, words (runs of non-space characters) are packed into chunks of at
   most ``target_words``. A chunk ends at the last paragraph break (a blank line) that
   keeps it within the target, if that break leaves it at least ``min_fill`` full;
   otherwise at the target itself, between two words. A word is never cut.
3. Consecutive chunks of a section share ``overlap_words`` words, so a sentence cut at
   a chunk's end is whole in one of the two.

A chunk's text is exactly ``document.text[start:end]``. Its :attr:`Chunk.key` is the
source, the chunk's index and a digest of its text: re-chunking an unchanged document
gives the same keys (so a re-index writes nothing new), and any edit changes the keys
of the chunks it touches.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from llmagentos.exceptions import ConfigError
from llmagentos.search.documents import Document, Heading

__all__ = ["Chunk", "ChunkSettings", "chunk_document", "chunk_key"]

_WORD = re.compile(r"\S+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True, slots=True)
class ChunkSettings:
    """How big chunks are: a target in words, the overlap, the least fill at a break."""

    target_words: int = 200
    overlap_words: int = 40
    min_fill: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.target_words, bool) or self.target_words < 1:
            raise ConfigError(
                "target_words", f"must be a positive integer, got {self.target_words!r}"
            )
        if not 0 <= self.overlap_words < self.target_words:
            raise ConfigError(
                "overlap_words",
                f"must be >= 0 and below target_words ({self.target_words}),"
                f" got {self.overlap_words!r}",
            )
        if not 0.0 <= self.min_fill <= 1.0:
            raise ConfigError("min_fill", f"must be within [0, 1], got {self.min_fill!r}")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One passage of a document, with what an index stores about it.

    ``start``/``end`` are character offsets into the document's text; ``words`` counts
    the chunk's words; ``digest`` is the SHA-256 of ``text``.
    """

    source: str
    index: int
    text: str
    start: int
    end: int
    words: int
    title: str
    heading_path: tuple[str, ...]
    digest: str

    @property
    def key(self) -> str:
        """``source#index:digest16``: stable for unchanged content (see :func:`chunk_key`)."""
        return chunk_key(self.source, self.index, self.digest)

    def metadata(self) -> dict[str, str | int]:
        """The chunk's metadata as flat JSON-able values, for a store's metadata column."""
        return {
            "source": self.source,
            "title": self.title,
            "heading_path": " > ".join(self.heading_path),
            "chunk_index": self.index,
            "start": self.start,
            "end": self.end,
            "words": self.words,
        }


def chunk_key(source: str, index: int, digest: str) -> str:
    """The stable key of a chunk: its source, its index and 16 hex digits of its digest."""
    return f"{source}#{index}:{digest[:16]}"


def chunk_document(document: Document, settings: ChunkSettings | None = None) -> list[Chunk]:
    """Split ``document`` into chunks (none for a document without words)."""
    settings = settings or ChunkSettings()
    chunks: list[Chunk] = []
    for start, end, path in _sections(document.text, document.headings):
        for first, last in _spans(document.text, start, end, settings):
            text = document.text[first:last]
            chunks.append(
                Chunk(
                    source=document.source,
                    index=len(chunks),
                    text=text,
                    start=first,
                    end=last,
                    words=len(_WORD.findall(text)),
                    title=document.title,
                    heading_path=path,
                    digest=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                )
            )
    return chunks


def _sections(
    text: str, headings: tuple[Heading, ...]
) -> Iterator[tuple[int, int, tuple[str, ...]]]:
    """(start, end, heading path) of each part of ``text`` between headings."""
    stack: list[Heading] = []
    start = 0
    for heading in sorted(headings, key=lambda h: h.offset):
        offset = _word_start(text, min(max(heading.offset, start), len(text)))
        offset = max(offset, start)
        if offset > start:
            yield start, offset, tuple(h.title for h in stack)
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        start = offset
    if len(text) > start:
        yield start, len(text), tuple(h.title for h in stack)


def _spans(text: str, start: int, end: int, settings: ChunkSettings) -> Iterator[tuple[int, int]]:
    """Character spans of the chunks of ``text[start:end]`` (see the module's rule)."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    if not words:
        return
    # Word indices at which a paragraph begins (after a blank line), ascending.
    breaks = sorted(
        {
            bisect.bisect_left(words, (gap.end(), -1))
            for gap in _PARAGRAPH_BREAK.finditer(text, start, end)
        }
    )
    target, overlap = settings.target_words, settings.overlap_words
    least = max(1, int(settings.min_fill * target))
    first = 0
    while True:
        last = min(first + target, len(words))  # exclusive word index
        if last < len(words):
            # The last paragraph break within (first + least .. last], if any.
            at = bisect.bisect_right(breaks, last) - 1
            if at >= 0 and breaks[at] >= first + least:
                last = breaks[at]
        yield words[first][0], words[last - 1][1]
        if last >= len(words):
            return
        first = max(last - overlap, first + 1)


def _word_start(text: str, offset: int) -> int:
    """``offset`` moved back to the start of the word it falls in (a cut never splits one)."""
    while 0 < offset < len(text) and not text[offset - 1].isspace() and not text[offset].isspace():
        offset -= 1
    return offset
