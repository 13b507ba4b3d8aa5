"""Passages: what the question-answering agent retrieves, and a minimal way to index them.

A passage is one memory item whose metadata says where it came from (``path``,
``title``, ``heading``); citations print those. Indexing here is deliberately small
(Markdown split at headings, a few hundred characters a passage, written by key so a
re-index is idempotent): the document loaders and chunkers of ``llmagentos.search``
are meant to replace it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmagentos.memory import MemoryManager, Namespace, NewMemory

__all__ = [
    "MAX_CHARS",
    "Passage",
    "SourcePassage",
    "fingerprint",
    "index_passages",
    "markdown_passages",
]

MAX_CHARS = 700
"""The longest passage body, in characters: small enough that three fit a small model's prompt."""

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True, slots=True)
class SourcePassage:
    """A passage to index: its text and where it came from."""

    key: str
    text: str
    path: str
    title: str
    heading: str
    extra: tuple[tuple[str, Any], ...] = ()

    def to_memory(self) -> NewMemory:
        metadata = {"path": self.path, "title": self.title, "heading": self.heading}
        metadata.update(dict(self.extra))
        return NewMemory(self.text, metadata, key=self.key)


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved passage, numbered as the model sees it (from 1).

    Attributes:
        number: its number in the prompt; ``id``/``key``: the memory item's.
        score: the search score (reciprocal-rank fusion for hybrid search).
    """

    number: int
    id: str
    key: str | None
    text: str
    path: str
    title: str
    heading: str
    score: float

    @property
    def where(self) -> str:
        """``path > heading`` (or the path alone), as a citation prints it."""
        return f"{self.path} > {self.heading}" if self.heading else self.path

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "id": self.id,
            "key": self.key,
            "path": self.path,
            "title": self.title,
            "heading": self.heading,
            "score": self.score,
            "text": self.text,
        }


def fingerprint(passages: Iterable[SourcePassage]) -> str:
    """A digest of the passages' keys and texts (an index is stale when it changes)."""
    digest = hashlib.sha256()
    for passage in passages:
        digest.update(passage.key.encode())
        digest.update(b"\0")
        digest.update(passage.text.encode())
        digest.update(b"\1")
    return digest.hexdigest()[:16]


def index_passages(
    memory: MemoryManager,
    namespace: Namespace,
    passages: Sequence[SourcePassage],
    *,
    batch: int = 64,
) -> int:
    """Write ``passages`` by key and delete the namespace's items with other keys.

    Returns how many items the namespace holds afterwards.
    """
    keys = {p.key for p in passages}
    for start in range(0, len(passages), batch):
        memory.put(namespace, [p.to_memory() for p in passages[start : start + batch]])
    stale: list[str] = []
    offset = 0
    while True:
        page = memory.list(namespace, limit=500, offset=offset)
        stale.extend(item.id for item in page if item.key not in keys)
        if len(page) < 500:
            break
        offset += 500
    if stale:
        memory.delete(namespace, stale)
    return memory.count(namespace)


def _windows(text: str, limit: int) -> list[str]:
    """``text`` cut at paragraph (then line) boundaries into pieces of at most ``limit``."""
    pieces: list[str] = []
    current = ""
    for raw in re.split(r"\n\s*\n", text):
        block = raw.strip()
        if not block:
            continue
        while len(block) > limit:  # one huge paragraph: cut at the last space before the limit
            cut = block.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            if current:
                pieces.append(current)
                current = ""
            pieces.append(block[:cut].strip())
            block = block[cut:].strip()
        if current and len(current) + 2 + len(block) > limit:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{block}" if current else block
    if current:
        pieces.append(current)
    return pieces


def markdown_passages(
    path: Path, *, name: str | None = None, max_chars: int = MAX_CHARS
) -> list[SourcePassage]:
    """A Markdown file's sections as passages: split at headings (not inside code
    fences), long sections cut at paragraph boundaries. Each passage's text starts
    with ``<title> — <heading>`` so a search for the topic finds its sections."""
    shown = name or path.name
    lines = path.read_text("utf-8", errors="replace").splitlines()
    title = ""
    sections: list[tuple[str, list[str]]] = [("", [])]
    fenced = False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match:
            heading = match.group(2).strip()
            if len(match.group(1)) == 1 and not title:
                title = heading
            sections.append((heading, []))
        else:
            sections[-1][1].append(line)
    title = title or path.stem
    out: list[SourcePassage] = []
    for heading, body in sections:
        for window in _windows("\n".join(body), max_chars):
            label = f"{title} — {heading}" if heading and heading != title else title
            out.append(
                SourcePassage(f"{shown}#{len(out)}", f"{label}\n{window}", shown, title, heading)
            )
    return out
