"""Lexical and latent baselines as document-similarity scorers: TF-IDF, BM25 and LSA.

All three read text through one tokeniser, :func:`tokenize`: gensim's
``preprocess_string`` with its default filters, the preprocessing of gensim's own
reproduction of Lee et al. (2005) (``gensim/test/test_lee.py``): lower-case, strip
markup, punctuation and digits, collapse whitespace, drop English stop words and tokens
of fewer than 3 characters, Porter-stem.

Each scorer fits its vocabulary and term statistics on ``background`` documents when
given (the Lee protocol: the 300 ``lee_background.cor`` documents) or else on the scored
documents themselves, and returns an n x n similarity matrix (see
:class:`llmagentos.search.lee.Scorer`):

* :class:`TfidfScorer` — cosine of TF-IDF vectors (gensim ``TfidfModel`` defaults:
  raw term frequency, log2 idf, unit length);
* :class:`BM25Scorer` — Okapi BM25 (gensim ``OkapiBM25Model``, k1 = 1.5, b = 0.75,
  epsilon = 0.25): row i holds the score of every document for document i's distinct
  terms as the query. It is not symmetric;
* :class:`LsaScorer` — cosine in a 200-dimensional LSA space (gensim ``LsiModel``) of
  log-entropy weighted counts, exactly gensim's Lee test. gensim's randomised SVD takes
  ``seed``; with 200 topics on 300 documents the decomposition is exact and every seed
  gives the same matrix.

Needs the ``[search]`` extra (gensim, which brings scipy).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from llmagentos.exceptions import ConfigError, MissingExtraError

__all__ = ["BM25Scorer", "LsaScorer", "TfidfScorer", "tokenize"]


def _gensim() -> Any:
    try:
        import gensim
        from gensim import corpora, matutils, models  # noqa: F401  (submodules loaded)
        from gensim.models import bm25model  # noqa: F401
        from gensim.parsing import preprocessing  # noqa: F401
    except ImportError as err:
        raise MissingExtraError("the search baselines", "search", "gensim") from err
    return gensim


def tokenize(text: str) -> list[str]:
    """gensim's default preprocessing of ``text`` (see the module docstring)."""
    return list(_gensim().parsing.preprocessing.preprocess_string(text))


@dataclass(frozen=True)
class _Fitted:
    dictionary: Any
    fit_bows: list[list[tuple[int, int]]]
    bows: list[list[tuple[int, int]]]


@functools.lru_cache(maxsize=8)
def _tokenized(texts: tuple[str, ...]) -> tuple[list[str], ...]:
    """Tokens of each text; cached, since every seed and scorer re-reads the same corpus."""
    preprocess = _gensim().parsing.preprocessing.preprocess_string
    return tuple(list(preprocess(text)) for text in texts)


def _fit(documents: Sequence[str], background: Sequence[str] | None) -> _Fitted:
    texts = _tokenized(tuple(documents))
    fit_texts = texts if background is None else _tokenized(tuple(background))
    dictionary = _gensim().corpora.Dictionary(fit_texts)
    return _Fitted(
        dictionary,
        [dictionary.doc2bow(text) for text in fit_texts],
        [dictionary.doc2bow(text) for text in texts],
    )


def _matrix(vectors: Any, n_terms: int) -> Any:
    """Sparse vectors (gensim's lists of (id, weight)) as rows of a CSR matrix."""
    return _gensim().matutils.corpus2csc(list(vectors), num_terms=n_terms).T.tocsr()


def _cosine(rows: Any) -> NDArray[np.float64]:
    dense = np.asarray(rows.todense() if hasattr(rows, "todense") else rows, dtype=np.float64)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    unit = dense / np.where(norms == 0.0, 1.0, norms)  # an empty document is similar to none
    return np.asarray(unit @ unit.T, dtype=np.float64)


def _fit_name(kind: str, background: Sequence[str] | None) -> str:
    return f"{kind} (fit on {'background' if background is not None else 'documents'})"


@dataclass(frozen=True)
class TfidfScorer:
    """Cosine similarity of TF-IDF vectors."""

    background: Sequence[str] | None = None
    stochastic = False

    @property
    def name(self) -> str:
        return _fit_name("TF-IDF", self.background)

    def similarity_matrix(self, documents: Sequence[str], *, seed: int = 0) -> NDArray[np.float64]:
        fitted = _fit(documents, self.background)
        model = _gensim().models.TfidfModel(dictionary=fitted.dictionary)  # its df counts
        return _cosine(_matrix(model[fitted.bows], len(fitted.dictionary)))


@dataclass(frozen=True)
class BM25Scorer:
    """Okapi BM25 with each document's distinct terms as the query (an asymmetric matrix)."""

    background: Sequence[str] | None = None
    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25
    stochastic = False

    def __post_init__(self) -> None:
        if not self.k1 > 0:
            raise ConfigError("k1", f"must be positive, got {self.k1!r}")
        if not 0.0 <= self.b <= 1.0:
            raise ConfigError("b", f"must be within [0, 1], got {self.b!r}")

    @property
    def name(self) -> str:
        return _fit_name("BM25", self.background)

    def similarity_matrix(self, documents: Sequence[str], *, seed: int = 0) -> NDArray[np.float64]:
        gensim = _gensim()
        fitted = _fit(documents, self.background)
        model = gensim.models.bm25model.OkapiBM25Model(
            corpus=fitted.fit_bows, k1=self.k1, b=self.b, epsilon=self.epsilon
        )
        n_terms = len(fitted.dictionary)
        weights = _matrix(model[fitted.bows], n_terms)  # BM25 weight of each term in each doc
        queries = _matrix(fitted.bows, n_terms)
        queries.data[:] = 1.0  # a query counts each distinct term once (gensim's 'bnn')
        return np.asarray((queries @ weights.T).todense(), dtype=np.float64)


@dataclass(frozen=True)
class LsaScorer:
    """Cosine similarity in an LSA space of log-entropy weighted counts."""

    background: Sequence[str] | None = None
    num_topics: int = 200
    stochastic = True

    def __post_init__(self) -> None:
        if isinstance(self.num_topics, bool) or self.num_topics < 1:
            raise ConfigError("num_topics", f"must be a positive integer, got {self.num_topics!r}")

    @property
    def name(self) -> str:
        return _fit_name(f"LSA-{self.num_topics}", self.background)

    def similarity_matrix(self, documents: Sequence[str], *, seed: int = 0) -> NDArray[np.float64]:
        gensim = _gensim()
        fitted = _fit(documents, self.background)
        weighting = gensim.models.LogEntropyModel(fitted.fit_bows)
        lsi = gensim.models.LsiModel(
            weighting[fitted.fit_bows],
            id2word=fitted.dictionary,
            num_topics=self.num_topics,
            random_seed=seed,
        )
        vectors = gensim.matutils.corpus2dense(
            lsi[weighting[fitted.bows]], num_terms=lsi.num_topics
        ).T
        return _cosine(vectors)
