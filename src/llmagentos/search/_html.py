"""HTML to plain text: paragraphs, headings with their offsets, and the ``<title>``.

The standard library's tolerant parser reads the markup (no dependency, no network);
scripts, styles and other non-text elements are dropped, block elements end a
paragraph, and whitespace is collapsed as a browser would (except inside ``<pre>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = ["HtmlText", "html_charset", "html_to_text"]

_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe", "object"})
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary",
        "table", "tbody", "thead", "tfoot", "tr", "ul",
    }
)  # fmt: skip
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_CELLS = frozenset({"td", "th"})
_SPACE = re.compile(r"\s+")
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HtmlText:
    """What the parser kept: the title, the paragraphs and headings in order."""

    title: str
    blocks: tuple[tuple[int, str], ...]  # (heading level or 0 for a paragraph, text)


def html_charset(data: bytes) -> str | None:
    """The charset a ``<meta>`` in the first 4 KiB declares, if any."""
    match = _CHARSET.search(data[:4096])
    return match.group(1).decode("ascii") if match else None


def html_to_text(markup: str) -> HtmlText:
    """Parse ``markup`` (already decoded) into a title and text blocks."""
    parser = _Extractor()
    parser.feed(markup)
    parser.close()
    parser.flush()
    return HtmlText(_SPACE.sub(" ", "".join(parser.title)).strip(), tuple(parser.blocks))


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.blocks: list[tuple[int, str]] = []
        self._parts: list[str] = []
        self._skip_depth = 0
        self._in_title = False
        self._pre_depth = 0
        self._heading = 0

    def flush(self) -> None:
        raw = "".join(self._parts)
        self._parts = []
        if self._pre_depth:
            text = "\n".join(line.rstrip() for line in raw.strip("\n").splitlines()).strip()
        else:
            text = _SPACE.sub(" ", raw).strip()
        if text:
            self.blocks.append((self._heading, text))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _HEADINGS:
            self.flush()
            self._heading = _HEADINGS[tag]
        elif tag in _BLOCK:
            self.flush()
            if tag == "pre":
                self._pre_depth += 1
        elif tag == "br":
            self._parts.append("\n" if self._pre_depth else " ")
        elif tag in _CELLS:
            self._parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP:  # a self-closed <script/> opens nothing
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _HEADINGS:
            self.flush()
            self._heading = 0
        elif tag in _BLOCK:
            self.flush()
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._in_title:
            self.title.append(data)
        else:
            self._parts.append(data)
