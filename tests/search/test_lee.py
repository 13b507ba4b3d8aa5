"""The Lee corpus evaluation: the data as shipped, the baselines' agreement, reproducibility."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from llmagentos.exceptions import ConfigError, DocumentError
from llmagentos.search import LeeCorpus, LeeReport, Scorer, baseline_scorers, evaluate, load_lee
from llmagentos.search.baselines import BM25Scorer, LsaScorer, TfidfScorer, tokenize

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def corpus() -> LeeCorpus:
    return load_lee()


@pytest.fixture(scope="module")
def report(corpus: LeeCorpus) -> LeeReport:
    return evaluate(baseline_scorers(corpus), corpus, seeds=SEEDS, resamples=300)


def test_the_corpus_as_gensim_ships_it(corpus: LeeCorpus) -> None:
    assert len(corpus.documents) == 50
    assert len(corpus.background) == 300
    assert corpus.human.shape == (50, 50)
    assert np.allclose(corpus.human, corpus.human.T)
    assert np.allclose(np.diag(corpus.human), 1.0)
    assert corpus.human.min() >= 0.0 and corpus.human.max() <= 1.0
    assert corpus.documents[0].startswith("The national executive of the strife-torn Democrats")


def test_tokenisation_is_gensims_default() -> None:
    assert tokenize("The Runners were RUNNING in 2001, quickly!") == ["runner", "run", "quickli"]


def test_baselines_agree_with_people_in_a_sane_range(report: LeeReport) -> None:
    tfidf = report["TF-IDF (fit on background)"]
    bm25 = report["BM25 (fit on background)"]
    lsa = report["LSA-200 (fit on background)"]
    assert 0.4 < tfidf.pearson < 0.7
    assert 0.4 < bm25.pearson < 0.7
    assert lsa.pearson > 0.6  # gensim's own reproduction of Lee et al. asserts this
    for system in (tfidf, bm25, lsa):
        assert 0.1 < system.query_spearman < 0.6
        low, high = system.pearson_bootstrap.low, system.pearson_bootstrap.high
        assert low < system.pearson < high
    # Ranking is where LSA's latent space pays: its per-query Spearman beats TF-IDF's
    # on paired queries, the interval clear of zero.
    gain = report.difference(lsa.name, tfidf.name).query_spearman
    assert gain.low > 0.0


def test_deterministic_scorers_run_once_stochastic_once_per_seed(report: LeeReport) -> None:
    runs = {system.name: [run.seed for run in system.runs] for system in report.systems}
    assert runs == {
        "TF-IDF (fit on background)": [0],
        "BM25 (fit on background)": [0],
        "LSA-200 (fit on background)": [0, 1],
    }


def _measures(report: LeeReport) -> list[tuple[object, ...]]:
    """Every number of a report but the timings (NaN-free: intervals of one run are NaN)."""
    return [
        (
            system.name,
            [(run.seed, run.pearson, run.spearman, run.query_spearman) for run in system.runs],
            system.pearson_bootstrap.to_dict(),
            system.per_query,
            system.matrix.tobytes(),
        )
        for system in report.systems
    ]


def test_numbers_are_reproducible(corpus: LeeCorpus, report: LeeReport) -> None:
    again = evaluate(baseline_scorers(corpus), corpus, seeds=SEEDS, resamples=300)
    assert _measures(again) == _measures(report)


def test_lsa_seeds_matter_only_when_the_svd_is_truncated(corpus: LeeCorpus) -> None:
    small = LsaScorer(corpus.background, num_topics=50)
    a = small.similarity_matrix(corpus.documents, seed=0)
    b = small.similarity_matrix(corpus.documents, seed=1)
    assert not np.array_equal(a, b)
    assert np.array_equal(a, small.similarity_matrix(corpus.documents, seed=0))


def test_fitting_on_the_documents_themselves(corpus: LeeCorpus) -> None:
    scorers = [TfidfScorer(), BM25Scorer()]
    result = evaluate(scorers, corpus, seeds=(0,), resamples=50)
    assert [s.name for s in result.systems] == [
        "TF-IDF (fit on documents)",
        "BM25 (fit on documents)",
    ]
    assert all(0.4 < s.pearson < 0.7 for s in result.systems)
    bm25 = BM25Scorer().similarity_matrix(corpus.documents[:5])
    assert not np.allclose(bm25, bm25.T)  # BM25 is a query score, not a symmetric one


class HumanScorer:
    """A scorer that knows the answers: the human matrix itself (the ceiling)."""

    stochastic = False

    def __init__(self, human: np.ndarray, noise: float = 0.0) -> None:
        self.human, self.noise = human, noise

    @property
    def name(self) -> str:
        return f"human + noise {self.noise}"

    def similarity_matrix(self, documents: Sequence[str], *, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return self.human + rng.normal(scale=self.noise, size=self.human.shape)


def test_any_scorer_plugs_in(corpus: LeeCorpus) -> None:
    perfect = HumanScorer(corpus.human)
    assert isinstance(perfect, Scorer)
    result = evaluate([perfect, HumanScorer(corpus.human, 0.5)], corpus, resamples=50)
    best = result[perfect.name]
    assert best.pearson == pytest.approx(1.0) and best.query_spearman == pytest.approx(1.0)
    assert result["human + noise 0.5"].pearson < 0.5


def test_bad_scorers_and_settings_are_refused(corpus: LeeCorpus) -> None:
    class Wrong(HumanScorer):
        def similarity_matrix(self, documents: Sequence[str], *, seed: int = 0) -> np.ndarray:
            return np.zeros((3, 3))

    with pytest.raises(ConfigError, match=r"returned shape \(3, 3\)"):
        evaluate([Wrong(corpus.human)], corpus, resamples=10)
    with pytest.raises(ConfigError, match="two scorers"):
        evaluate([HumanScorer(corpus.human)] * 2, corpus, resamples=10)
    with pytest.raises(ConfigError) as caught:
        evaluate([HumanScorer(corpus.human)], corpus, seeds=())
    assert caught.value.field == "seeds"
    with pytest.raises(ConfigError):
        baseline_scorers(corpus, fit="everything")


def test_a_damaged_copy_of_the_data_is_named(corpus: LeeCorpus, tmp_path: Path) -> None:
    for name in ["lee.cor", "lee_background.cor", "similarities0-1.txt"]:
        shutil.copy(corpus.folder / name, tmp_path / name)
    assert load_lee(tmp_path).documents == corpus.documents
    lines = (tmp_path / "lee.cor").read_bytes().splitlines()
    (tmp_path / "lee.cor").write_bytes(b"\n".join(lines[:49]))
    with pytest.raises(DocumentError, match="expected 50 documents, found 49") as caught:
        load_lee(tmp_path)
    assert caught.value.path == str(tmp_path / "lee.cor")


def test_the_engine_as_a_scorer(corpus: LeeCorpus) -> None:
    from llmagentos.search.lee_engine import EngineScorer

    lexical = EngineScorer("lexical")
    matrix = lexical.similarity_matrix(corpus.documents)
    assert matrix.shape == (50, 50)
    assert np.all(np.argmax(matrix, axis=1) == np.arange(50))  # each document finds itself
    result = evaluate([lexical, EngineScorer("hybrid", embedder="hash:256")], corpus, resamples=50)
    # FTS5's BM25 over the 50 documents lands where gensim's BM25 does.
    assert 0.4 < result["engine lexical (FTS5 BM25)"].pearson < 0.65
    assert 0.1 < result["engine hybrid (hash:256)"].query_spearman < 0.5
