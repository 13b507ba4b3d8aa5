"""Real PDF files for the loader tests, written byte by byte (no PDF library writes text).

Each page draws its lines of text in Helvetica; pypdf then adds the metadata, the
outline or the encryption a test asks for.
"""

from __future__ import annotations

import io

import pypdf


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def plain_pdf(pages: list[list[str]]) -> bytes:
    """A PDF with one page per list of lines, with a correct cross-reference table."""
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for index, lines in enumerate(pages):
        content_id = page_ids[index] + 1
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R"
            " /Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            ops.append(f"({_escape(line)}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"
        )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def make_pdf(
    pages: list[list[str]],
    *,
    title: str | None = None,
    outline: list[tuple[str, int]] = (),  # type: ignore[assignment]
    password: str | None = None,
    blank_pages: int = 0,
) -> bytes:
    """``plain_pdf`` rewritten by pypdf with a title, bookmarks, blank pages, a password."""
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(plain_pdf(pages))))
    for _ in range(blank_pages):
        writer.add_blank_page(612, 792)
    if title is not None:
        writer.add_metadata({"/Title": title})
    for name, page in outline:
        writer.add_outline_item(title=name, page_number=page)
    if password is not None:
        writer.encrypt(user_password=password, owner_password=password + "-owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
