"""What a lexical query asks SQLite's FTS5: the user's words, quoted, and only as many
of them as keep the search cheap."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence

__all__ = [
    "LEXICAL_CANDIDATES",
    "QUERY_TERMS_SCHEMA",
    "TermStatistics",
    "fts_query",
    "fts_table",
    "query_words",
    "vocab_table",
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
# A namespace's remembered document frequencies are dropped once its row count has
# moved by more than this fraction since they were read.
_DRIFT = 0.1
_MAX_WORDS = 16_384
_MAX_TERMS = 65_536
_MAX_NAMESPACES = 256


def fts_table(ns: int) -> str:
    """The full-text table of namespace ``ns`` (an integer: safe to name a table by)."""
    return f"fts_{int(ns)}"


def vocab_table(ns: int) -> str:
    """The term statistics (fts5vocab, per row) of namespace ``ns``'s full-text table."""
    return f"vocab_{int(ns)}"


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


def _varint(blob: bytes) -> int:
    """The first SQLite varint of ``blob`` (big-endian 7-bit groups, a 9th byte of 8)."""
    value = 0
    for n, byte in enumerate(blob[:9]):
        if n == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value
    raise ValueError("truncated varint")


class _Frequencies:
    """One namespace's document frequencies, read when it held ``rows`` rows."""

    __slots__ = ("rows", "terms")

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.terms: dict[str, int] = {}


class TermStatistics:
    """Which query words a lexical search keeps, from per-namespace term statistics.

    FTS5's vocab table counts a term's rows by walking its whole posting list (~3 ms
    for a word in most of 100k rows), so the counts are remembered, as a database's
    planner keeps statistics: per namespace, until its row count (FTS5's own, one
    record read per query) drifts by more than 10%. They only choose which words are
    scored, never the scores, so a stale count costs a little speed or recall at
    worst; a word no row held is looked up again every time, so a word that newly
    appears is found at once. The stems of words are remembered too (exact: the
    tokenizer never changes).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stems: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._namespaces: OrderedDict[int, _Frequencies] = OrderedDict()

    def selective_words(
        self,
        connection: sqlite3.Connection,
        ns: int,
        words: list[str],
        candidates: int | None = None,
    ) -> list[str]:
        """``words`` rarest first while the rows they can match stay within
        ``candidates`` (default ``LEXICAL_CANDIDATES``; the rarest always); words no
        row holds are dropped. The kept words are returned in the query's order."""
        if len(words) < 2:
            return words
        budget = LEXICAL_CANDIDATES if candidates is None else candidates
        stems = self._stem(connection, words)
        frequencies = self._frequencies(connection, ns, {t for s in stems for t in s})
        # A word of several tokens is a phrase: it matches at most its rarest token's rows.
        rows = {i: min((frequencies[t] for t in s), default=0) for i, s in enumerate(stems)}
        order = sorted((n, i) for i, n in rows.items() if n > 0)
        chosen: list[int] = []
        total = 0
        for n, i in order:
            if chosen and total + n > budget:
                break
            chosen.append(i)
            total += n
        return [words[i] for i in sorted(chosen)]

    def _stem(self, connection: sqlite3.Connection, words: list[str]) -> list[tuple[str, ...]]:
        with self._lock:
            known = {w: self._stems[w] for w in words if w in self._stems}
            for word in known:
                self._stems.move_to_end(word)
        unknown = [w for w in words if w not in known]
        if unknown:
            connection.execute("DELETE FROM temp.query_words")
            connection.executemany(
                "INSERT INTO temp.query_words (rowid, text) VALUES (?, ?)", enumerate(unknown)
            )
            found: dict[int, list[str]] = {}
            for term, i in connection.execute("SELECT term, doc FROM temp.query_terms"):
                found.setdefault(int(i), []).append(str(term))
            with self._lock:
                for i, word in enumerate(unknown):
                    known[word] = self._stems[word] = tuple(dict.fromkeys(found.get(i, [])))
                while len(self._stems) > _MAX_WORDS:
                    self._stems.popitem(last=False)
        return [known[w] for w in words]

    def _frequencies(
        self, connection: sqlite3.Connection, ns: int, terms: set[str]
    ) -> dict[str, int]:
        rows = self._rows(connection, ns)
        with self._lock:
            entry = self._namespaces.pop(ns, None)
            if entry is None or rows is None or abs(rows - entry.rows) > _DRIFT * entry.rows:
                entry = _Frequencies(rows or 0)
            if rows is not None:  # most recently used last
                self._namespaces[ns] = entry
            while len(self._namespaces) > _MAX_NAMESPACES:
                self._namespaces.popitem(last=False)
            result = {t: entry.terms[t] for t in terms if t in entry.terms}
        vocab = vocab_table(ns)
        # One lookup per term: ``term IN (...)`` makes the vocab table walk every term.
        fresh = {}
        for term in terms - result.keys():
            row = connection.execute(f"SELECT doc FROM {vocab} WHERE term = ?", (term,)).fetchone()
            fresh[term] = int(row[0]) if row else 0
        result.update(fresh)
        with self._lock:
            entry.terms.update((t, n) for t, n in fresh.items() if n > 0)
            if len(entry.terms) > _MAX_TERMS:
                entry.terms.clear()
        return result

    @staticmethod
    def _rows(connection: sqlite3.Connection, ns: int) -> int | None:
        """The namespace's row count as FTS5 keeps it for BM25: the first varint of its
        "averages" record (``id = 1`` of the ``_data`` table); ``None`` if unreadable."""
        row = connection.execute(f"SELECT block FROM {fts_table(ns)}_data WHERE id = 1").fetchone()
        if row is None or not isinstance(row[0], bytes):
            return None
        try:
            return _varint(row[0])
        except ValueError:
            return None
