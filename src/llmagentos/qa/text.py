"""Text helpers shared by the planners and the scorer: content words, coverage,
sentences, numbers and answer normalisation. Model-free and deterministic."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

__all__ = [
    "STOPWORDS",
    "UNKNOWN_ANSWERS",
    "content_words",
    "coverage",
    "is_unknown",
    "normalize_answer",
    "numbers_in",
    "sentences",
]

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "without",
        "and",
        "or",
        "not",
        "no",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "do",
        "does",
        "did",
        "done",
        "have",
        "has",
        "had",
        "having",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "many",
        "much",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "me",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "them",
        "us",
        "as",
        "if",
        "then",
        "than",
        "so",
        "such",
        "into",
        "about",
        "over",
        "under",
        "up",
        "down",
        "out",
        "off",
        "all",
        "any",
        "each",
        "some",
        "more",
        "most",
        "other",
        "only",
        "own",
        "same",
        "very",
        "just",
        "also",
        "too",
        "s",
        "t",
    ]
)
"""Function words and question words: what a question shares with any passage."""

UNKNOWN_ANSWERS = frozenset(
    {"unknown", "i don't know", "i do not know", "don't know", "not known", "not stated",
     "not given", "not mentioned", "no answer", "none", "n/a", "cannot be determined"}
)  # fmt: skip

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])-?\d+(?:\.\d+)?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])|\n\s*\n")


def _stem(word: str) -> str:
    # Plurals only: "observations" finds "observation"; anything cleverer would need a stemmer.
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    """The words of ``text`` that are not stopwords, lowercased and de-pluralised, in order."""
    words = (_stem(w) for w in _WORD.findall(text.lower()))
    return list(dict.fromkeys(w for w in words if w not in STOPWORDS))


def coverage(question: str, passages: Sequence[str]) -> float:
    """The largest share of the question's content words any one passage contains.

    1.0 for a question without content words (nothing to miss)."""
    wanted = content_words(question)
    if not wanted:
        return 1.0
    best = 0
    for passage in passages:
        have = set(content_words(passage))
        best = max(best, sum(1 for w in wanted if w in have))
    return best / len(wanted)


def sentences(text: str) -> list[str]:
    """``text`` split into sentences (and at blank lines), whitespace collapsed."""
    parts = (" ".join(part.split()) for part in _SENTENCE.split(text))
    return [part for part in parts if part]


def numbers_in(text: str) -> list[str]:
    """The numbers in ``text`` in order, thousands separators removed (``"1,234"`` → ``"1234"``)."""
    return [n.replace(",", "") for n in _NUMBER.findall(text)]


def normalize_answer(text: str) -> str:
    """Lowercase, no punctuation (but decimal points), no articles, single spaces, and
    numbers without thousands separators: SQuAD's normalisation, kept for numbers."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
    text = "".join(" " if c in string.punctuation and c != "." else c for c in text)
    text = re.sub(r"\.(?!\d)", " ", text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_UNKNOWN_PHRASES = ("unknown", "don t know", "do not know", "not mentioned", "not stated",
                    "not given", "cannot be determined", "no information")  # fmt: skip


def is_unknown(answer: str) -> bool:
    """Whether a model's answer says it does not know (or says nothing): one of
    :data:`UNKNOWN_ANSWERS`, or a sentence with a phrase such as "unknown" in it."""
    normal = normalize_answer(answer)
    if not normal or normal in {normalize_answer(a) for a in UNKNOWN_ANSWERS}:
        return True
    padded = f" {normal} "
    return any(f" {phrase} " in padded for phrase in _UNKNOWN_PHRASES)
