"""The loaders: text, Markdown, HTML and PDF read into Documents; bad files named by path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from llmagentos.exceptions import DocumentError
from llmagentos.search import Heading, find_documents, load_document
from tests.search.pdfs import make_pdf, plain_pdf


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def test_text_file_carries_its_fingerprint_and_source(tmp_path: Path) -> None:
    file = _write(tmp_path / "notes" / "a.txt", "First line.\r\n\r\nSecond paragraph.\n")
    document = load_document(file, root=tmp_path)
    assert document.source == "notes/a.txt"
    assert document.title == "a"
    assert document.text == "First line.\n\nSecond paragraph.\n"  # newlines normalised
    assert document.media_type == "text/plain"
    assert document.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert document.size == file.stat().st_size
    assert document.mtime_ns == file.stat().st_mtime_ns
    assert document.headings == ()
    assert load_document(file).source == file.as_posix()  # no root: the path itself


def test_latin1_text_is_read_not_refused(tmp_path: Path) -> None:
    text = "café \u2013 \u201cquoted\u201d"  # an en dash and curly quotes: cp1252 only
    file = _write(tmp_path / "old.txt", text.encode("cp1252"))
    assert load_document(file).text == text


def test_markdown_title_headings_and_code_fences(tmp_path: Path) -> None:
    source = (
        "---\ntitle: The Guide\n---\n"
        "Intro text.\n\n"
        "# Install\n\nRun it.\n\n"
        "```bash\n# not a heading\n```\n\n"
        "From source\n-----------\n\nBuild it.\n\n"
        "## Windows ##\n\nSame.\n"
    )
    document = load_document(_write(tmp_path / "guide.md", source))
    assert document.title == "The Guide"  # front matter wins over the first heading
    assert document.text.startswith("Intro text.")  # the front matter is not text
    assert [(h.level, h.title) for h in document.headings] == [
        (1, "Install"),
        (2, "From source"),
        (2, "Windows"),
    ]
    for heading in document.headings:  # each offset is the start of the heading's line
        assert document.text[heading.offset - 1] == "\n"
        assert heading.title in document.text[heading.offset :].split("\n")[0]


def test_markdown_title_falls_back_to_first_h1(tmp_path: Path) -> None:
    document = load_document(_write(tmp_path / "x.md", "Some text\n\n# Real Title\n\nbody"))
    assert document.title == "Real Title"


def test_html_keeps_text_title_and_headings_but_not_scripts(tmp_path: Path) -> None:
    markup = """<!doctype html><html><head><meta charset="windows-1252">
    <title>  The   Page </title><style>p { color: red }</style>
    <script>var hidden = "secret";</script></head>
    <body><nav>Home</nav><h1>Top</h1><p>First &amp; <b>bold</b>
    paragraph.</p><script>alert("no")</script><h2>Sub</h2><p>caf\xe9</p>
    <pre>line 1
  line 2</pre><noscript>enable js</noscript><table><tr><td>a</td><td>b</td></tr></table>
    </body></html>"""
    file = _write(tmp_path / "page.html", markup.encode("cp1252"))
    document = load_document(file)
    assert document.title == "The Page"
    assert document.media_type == "text/html"
    assert "secret" not in document.text and "alert" not in document.text
    assert "color" not in document.text and "enable js" not in document.text
    assert document.text.split("\n\n") == [
        "Home",
        "Top",
        "First & bold paragraph.",
        "Sub",
        "café",
        "line 1\n  line 2",
        "a b",
    ]
    assert document.headings == (
        Heading(1, "Top", document.text.index("Top")),
        Heading(2, "Sub", document.text.index("Sub")),
    )


def test_pdf_pages_title_and_outline(tmp_path: Path) -> None:
    data = make_pdf(
        [["Chapter one", "text of one"], ["Chapter two", "text of two"]],
        title="Two Chapters",
        outline=[("One", 0), ("Two", 1)],
    )
    document = load_document(_write(tmp_path / "book.pdf", data))
    assert document.title == "Two Chapters"
    assert document.media_type == "application/pdf"
    assert document.text == "Chapter one\ntext of one\n\nChapter two\ntext of two"
    assert [(h.title, document.text[h.offset :][:11]) for h in document.headings] == [
        ("One", "Chapter one"),
        ("Two", "Chapter two"),
    ]


def test_pdf_without_metadata_title_uses_file_name(tmp_path: Path) -> None:
    document = load_document(_write(tmp_path / "report.pdf", plain_pdf([["just text"]])))
    assert (document.title, document.text) == ("report", "just text")


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("truncated.pdf", plain_pdf([["some text"]])[:150], "unreadable PDF"),
        ("junk.pdf", bytes(range(256)) * 20, "unreadable PDF"),
        ("fake.pdf", b"%PDF-1.7\nthis is not a pdf at all\n", "unreadable PDF"),
        ("locked.pdf", make_pdf([["secret"]], password="pw"), "encrypted PDF"),
        ("scanned.pdf", make_pdf([], blank_pages=2), "no extractable text in 2 page(s)"),
        ("binary.txt", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8, "binary content"),
        ("controls.md", bytes([1, 2, 3, 4, 5, 6, 7, 8, 14, 15]) * 50, "binary content"),
        ("image.html", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "binary content"),
        ("archive.zip", b"PK\x03\x04", "unsupported type '.zip'"),
    ],
    ids=lambda value: value if isinstance(value, str) else "data",  # PDFs hold random ids
)
def test_unreadable_files_raise_document_error_naming_the_path(
    tmp_path: Path, name: str, data: bytes, reason: str
) -> None:
    file = _write(tmp_path / name, data)
    with pytest.raises(DocumentError) as caught:
        load_document(file)
    assert caught.value.path == str(file)
    assert reason in caught.value.reason
    assert str(file) in str(caught.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="cannot read") as caught:
        load_document(tmp_path / "gone.txt")
    assert caught.value.path == str(tmp_path / "gone.txt")
    if os.geteuid() != 0:  # root reads any file whatever its mode
        locked = _write(tmp_path / "locked.txt", "x")
        locked.chmod(0)
        with pytest.raises(DocumentError, match="cannot read"):
            load_document(locked)


def test_find_documents_lists_supported_files_skipping_hidden(tmp_path: Path) -> None:
    for name in ["b.md", "a.txt", "sub/c.HTML", "sub/d.pdf", "e.zip", ".hidden.txt", ".git/f.md"]:
        _write(tmp_path / name, "x")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)  # not followed
    found = [path.relative_to(tmp_path).as_posix() for path in find_documents(tmp_path)]
    assert found == ["a.txt", "b.md", "sub/c.HTML", "sub/d.pdf"]
    with pytest.raises(DocumentError, match="not a folder"):
        list(find_documents(tmp_path / "a.txt"))
