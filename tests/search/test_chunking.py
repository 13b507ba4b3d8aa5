"""Chunking invariants, on generated documents: exact spans, whole words, full coverage."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmagentos.exceptions import ConfigError
from llmagentos.search import ChunkSettings, Document, Heading, chunk_document, load_document
from llmagentos.search.documents import parse_document

WORD = re.compile(r"\S+")


def _document(text: str, headings: tuple[Heading, ...] = (), source: str = "d.md") -> Document:
    return Document(
        path=Path(source),
        source=source,
        title="T",
        text=text,
        media_type="text/markdown",
        sha256="0" * 64,
        mtime_ns=0,
        size=len(text),
        headings=headings,
    )


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzé.,-'\u20190123456789", min_size=1, max_size=12)
separators = st.sampled_from([" ", " ", " ", "  ", "\n", "\t", "\n\n", "\n \n", "\u00a0"])


@st.composite
def markdown(draw: st.DrawFn) -> str:
    """Paragraphs of words under random ATX headings."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            lines.append("#" * draw(st.integers(1, 4)) + " " + draw(words) + "\n\n")
        body = [draw(words) + draw(separators) for _ in range(draw(st.integers(0, 80)))]
        lines.append("".join(body) + "\n\n")
    return "".join(lines)


chunk_settings = st.builds(
    lambda target, overlap_share, fill: ChunkSettings(
        target_words=target, overlap_words=int(overlap_share * (target - 1)), min_fill=fill
    ),
    st.integers(1, 40),
    st.floats(0.0, 0.9),
    st.sampled_from([0.0, 0.5, 1.0]),
)


@settings(max_examples=150, deadline=None)
@given(markdown(), chunk_settings)
def test_chunk_invariants(source: str, config: ChunkSettings) -> None:
    parsed = parse_document(source.encode(), "text/markdown")
    document = replace(_document(parsed.text, parsed.headings), title=parsed.title or "T")
    chunks = chunk_document(document, config)
    text = document.text
    word_spans = [(m.start(), m.end()) for m in WORD.finditer(text)]
    covered: set[tuple[int, int]] = set()
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.text == text[chunk.start : chunk.end]  # offsets are exact
        # Never cuts a word: both ends fall on a word's edge.
        assert chunk.start == 0 or text[chunk.start - 1].isspace()
        assert chunk.end == len(text) or text[chunk.end].isspace()
        assert not chunk.text[0].isspace() and not chunk.text[-1].isspace()
        assert 1 <= chunk.words <= config.target_words
        assert chunk.words == len(WORD.findall(chunk.text))
        covered.update(s for s in word_spans if chunk.start <= s[0] and s[1] <= chunk.end)
    assert covered == set(word_spans)  # every word is in some chunk
    for before, after in itertools.pairwise(chunks):
        assert before.start < after.start  # in document order, always moving on
        if after.start < before.end:  # overlapping: same section, at most overlap_words
            shared = len(WORD.findall(text[after.start : before.end]))
            assert shared <= config.overlap_words
            assert before.heading_path == after.heading_path
    assert len({chunk.key for chunk in chunks}) == len(chunks)
    assert chunk_document(document, config) == chunks  # deterministic


def test_sections_and_heading_paths(tmp_path: Path) -> None:
    file = tmp_path / "g.md"
    file.write_text(
        "Preface words.\n\n# Install\n\nIntro.\n\n## From source\n\nBuild.\n\n"
        "### Linux\n\nmake\n\n## Binary\n\nDownload.\n\n# Use\n\nRun.\n",
        encoding="utf-8",
    )
    chunks = chunk_document(load_document(file, root=tmp_path))
    assert [(c.heading_path, c.text.split("\n")[-1]) for c in chunks] == [
        ((), "Preface words."),
        (("Install",), "Intro."),
        (("Install", "From source"), "Build."),
        (("Install", "From source", "Linux"), "make"),
        (("Install", "Binary"), "Download."),
        (("Use",), "Run."),
    ]
    assert chunks[2].text == "## From source\n\nBuild."  # a section starts at its heading
    assert chunks[3].metadata() == {
        "source": "g.md",
        "title": "Install",
        "heading_path": "Install > From source > Linux",
        "chunk_index": 3,
        "start": chunks[3].start,
        "end": chunks[3].end,
        "words": 3,
    }


def test_paragraph_breaks_preferred_then_words_with_overlap() -> None:
    first = " ".join(f"a{i}" for i in range(6))
    second = " ".join(f"b{i}" for i in range(20))
    document = _document(first + "\n\n" + second)
    chunks = chunk_document(document, ChunkSettings(target_words=10, overlap_words=2))
    texts = [chunk.text.split() for chunk in chunks]
    # The first chunk stops at the paragraph break (6 words >= half of 10), not at 10.
    assert texts[0] == [f"a{i}" for i in range(6)]
    # Then 10-word windows, each starting 2 words before the previous one ended.
    assert texts[1][:2] == ["a4", "a5"]
    assert texts[2][:2] == texts[1][-2:]
    assert sum(len(t) for t in texts) - 2 * (len(texts) - 1) == 26


def test_a_break_too_early_is_not_taken() -> None:
    document = _document("a b\n\n" + " ".join(f"w{i}" for i in range(20)))
    chunks = chunk_document(document, ChunkSettings(target_words=10, overlap_words=0))
    assert chunks[0].words == 10  # the break after 2 words would leave it 20% full


def test_keys_stable_until_content_changes() -> None:
    text = "\n\n".join(" ".join(f"p{p}w{i}" for i in range(30)) for p in range(5))
    config = ChunkSettings(target_words=30, overlap_words=0)
    before = chunk_document(_document(text), config)
    again = chunk_document(_document(text), config)
    assert [c.key for c in before] == [c.key for c in again]
    edited = text.replace("p4w29", "changed")
    after = chunk_document(_document(edited), config)
    assert [c.key for c in after[:4]] == [c.key for c in before[:4]]
    assert after[4].key != before[4].key
    assert before[0].key.startswith("d.md#0:") and len(before[0].key.split(":")[-1]) == 16


def test_empty_and_whitespace_documents_have_no_chunks() -> None:
    assert chunk_document(_document("")) == []
    assert chunk_document(_document(" \n\n\t ")) == []
    # A heading with nothing under it and no words of its own makes no chunk either.
    assert chunk_document(_document("\n\n", (Heading(1, "", 0),))) == []


def test_a_heading_offset_inside_a_word_does_not_cut_it() -> None:
    document = _document("alpha beta gamma", (Heading(1, "x", 8),))
    chunks = chunk_document(document)
    assert [c.text for c in chunks] == ["alpha", "beta gamma"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target_words": 0}, "target_words"),
        ({"target_words": 10, "overlap_words": 10}, "overlap_words"),
        ({"overlap_words": -1}, "overlap_words"),
        ({"min_fill": 1.5}, "min_fill"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ChunkSettings(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
