"""What a lexical query asks SQLite's FTS5: the user's words, quoted, and only as many
of them as keep the search cheap."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence

__all__ = [
    "LEXICAL_CANDIDATES",
    "QUERY_TERMS_SCHEMA",
    "fts_query",
    "query_words",
    "selective_words",
]

_TOKEN = re.compile(r"\w+", re.UNICODE)
_MAX_QUERY_TERMS = 64
# A lexical search scores (BM25) every row that holds any query term; common terms make
# that every row of a large store. Terms are taken rarest first while the rows they can
# match stay within this many (the rarest term always): the best BM25 matches hold rare
# terms, and common ones barely move their scores (low IDF).
LEXICAL_CANDIDATES = 4096
# Per connection: the query's words tokenized by the index's own tokenizer (stemmed), so
# their document frequencies can be read from the namespace's vocab table.
QUERY_TERMS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_words USING fts5(
    text, tokenize='porter unicode61'
);
CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_terms USING fts5vocab(temp, query_words, 'instance');
"""


def query_words(text: str) -> list[str]:
    """A user's text as query words: lower-cased, first occurrence kept, at most 64."""
    return list(dict.fromkeys(t.lower() for t in _TOKEN.findall(text)))[:_MAX_QUERY_TERMS]


def fts_query(text: str | Sequence[str]) -> str | None:
    """A user's text (or its words) as an FTS5 query: the words, each quoted, joined by OR.

    Quoting makes every word a plain term, so no input is read as FTS5 syntax
    (``NEAR``, ``*``, column filters, unbalanced quotes).
    """
    terms = query_words(text) if isinstance(text, str) else list(text)
    if not terms:
        return None
    return " OR ".join(f'"{term}"' for term in terms)


def selective_words(connection: sqlite3.Connection, vocab: str, words: list[str]) -> list[str]:
    """``words`` rarest first while the rows they can match stay within
    ``LEXICAL_CANDIDATES`` (the rarest always); words no row holds are dropped.

    ``vocab`` is the namespace's fts5vocab table (document frequency per term); the
    words are stemmed by the index's own tokenizer in a per-connection temp table.
    """
    if len(words) < 2:
        return words
    connection.execute("DELETE FROM temp.query_words")
    connection.executemany(
        "INSERT INTO temp.query_words (rowid, text) VALUES (?, ?)", enumerate(words)
    )
    stems = connection.execute("SELECT term, doc FROM temp.query_terms").fetchall()
    terms = list({term for term, _ in stems})
    if not terms:
        return words
    marks = ", ".join("?" * len(terms))
    found = dict(
        connection.execute(
            f"SELECT term, doc FROM {vocab} WHERE term IN ({marks})", terms
        ).fetchall()
    )
    # A word of several tokens is a phrase: it matches at most its rarest token's rows.
    rows: dict[int, int] = {}
    for term, word in stems:
        rows[word] = min(rows.get(word, 1 << 62), found.get(term, 0))
    order = sorted((n, i) for i, n in rows.items() if n > 0)
    chosen: list[int] = []
    total = 0
    for n, i in order:
        if chosen and total + n > LEXICAL_CANDIDATES:
            break
        chosen.append(i)
        total += n
    return [words[i] for i in sorted(chosen)]
