"""The Lee corpus evaluation: query by document, scored against human similarity judgments.

Lee, Pincombe and Welsh (2005) had people rate the similarity of every pair of 50 short
news documents (about ten ratings per pair, averaged and scaled to 0..1). gensim ships
the documents (``lee.cor``), the averaged judgments (``similarities0-1.txt``, the upper
triangle of a 50 x 50 matrix) and 300 more documents from the same source for fitting
models on (``lee_background.cor``) among its test data, so the evaluation needs no
download: ``pip install 'llmagentos[search]'``.

:func:`evaluate` asks each :class:`Scorer` for the 50 x 50 similarity matrix of the 50
documents and reports, per system:

* Pearson and Spearman correlation with the human matrix over the 1,225 pairs of the
  upper triangle (Lee et al.'s and gensim's measure; LSA's published Pearson is about
  0.6), with a 95% bootstrap interval over resampled documents;
* the mean per-query Spearman (each document as the query, the others ranked), with a
  95% Student-t interval over the 50 queries;
* for a stochastic scorer, every seed's run and the mean over seeds with its interval.

The bootstrap draws are shared by the systems, so :meth:`LeeReport.difference` gives
paired intervals for the difference between two systems.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from llmagentos.exceptions import ConfigError, DocumentError, MissingExtraError
from llmagentos.search.metrics import (
    Interval,
    bootstrap_pair_pearson,
    pair_correlations,
    query_spearman,
)

__all__ = [
    "LEE_BACKGROUND_DOCUMENTS",
    "LEE_DOCUMENTS",
    "Difference",
    "LeeCorpus",
    "LeeReport",
    "RunScores",
    "Scorer",
    "SystemResult",
    "baseline_scorers",
    "evaluate",
    "load_lee",
]

LEE_DOCUMENTS = 50
LEE_BACKGROUND_DOCUMENTS = 300


@runtime_checkable
class Scorer(Protocol):
    """A document-similarity system: documents in, an n x n similarity matrix out.

    Row i holds the similarity of every document to document i as the query; the
    diagonal is ignored and the matrix need not be symmetric. ``stochastic`` scorers
    are run once per seed, the others once.
    """

    @property
    def name(self) -> str: ...

    @property
    def stochastic(self) -> bool: ...

    def similarity_matrix(
        self, documents: Sequence[str], *, seed: int = 0
    ) -> NDArray[np.float64]: ...


@dataclass(frozen=True)
class LeeCorpus:
    """The 50 documents, the 300 background documents and the symmetric human matrix."""

    documents: tuple[str, ...]
    background: tuple[str, ...]
    human: NDArray[np.float64]
    folder: Path


def _gensim_test_data() -> Path:
    """gensim's ``test/test_data`` folder, found without importing gensim."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or spec.origin is None:
        raise MissingExtraError("the Lee corpus", "search", "gensim")
    return Path(spec.origin).parent / "test" / "test_data"


def _read_lines(path: Path, expected: int) -> tuple[str, ...]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DocumentError(str(path), f"cannot read: {err.strerror or err}") from err
    # One document per line, Latin-1 (as gensim's test reads it); the last has no newline.
    lines = tuple(line.strip() for line in raw.decode("latin-1").splitlines() if line.strip())
    if len(lines) != expected:
        raise DocumentError(str(path), f"expected {expected} documents, found {len(lines)}")
    return lines


def _read_human(path: Path, n: int) -> NDArray[np.float64]:
    try:
        matrix = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as err:
        raise DocumentError(str(path), f"not a matrix of numbers: {err}") from err
    if matrix.shape != (n, n):
        raise DocumentError(str(path), f"expected a {n} x {n} matrix, found {matrix.shape}")
    lower = np.tril(matrix, -1)
    if np.any(lower) and not np.allclose(matrix, matrix.T):
        raise DocumentError(str(path), "neither upper-triangular nor symmetric")
    upper = np.triu(matrix)
    return upper + np.triu(matrix, 1).T


def load_lee(folder: str | Path | None = None) -> LeeCorpus:
    """Read the corpus from ``folder`` (default: gensim's installed test data).

    Raises:
        MissingExtraError: gensim is not installed and no folder was given.
        DocumentError: a file is missing or has not the expected 50 / 300 documents or
            50 x 50 judgments.
    """
    where = _gensim_test_data() if folder is None else Path(folder)
    return LeeCorpus(
        documents=_read_lines(where / "lee.cor", LEE_DOCUMENTS),
        background=_read_lines(where / "lee_background.cor", LEE_BACKGROUND_DOCUMENTS),
        human=_read_human(where / "similarities0-1.txt", LEE_DOCUMENTS),
        folder=where,
    )


def baseline_scorers(corpus: LeeCorpus, *, fit: str = "background") -> list[Scorer]:
    """TF-IDF, BM25 and LSA-200, fit on the background documents or on the 50 themselves.

    ``fit="background"`` is the protocol of gensim's Lee test (vocabulary, term
    statistics and the LSA space from ``lee_background.cor``); ``"documents"`` fits on
    the scored documents, as a search engine indexing only them would.
    """
    from llmagentos.search.baselines import BM25Scorer, LsaScorer, TfidfScorer

    if fit not in ("background", "documents"):
        raise ConfigError("fit", f"must be 'background' or 'documents', got {fit!r}")
    background = corpus.background if fit == "background" else None
    return [TfidfScorer(background), BM25Scorer(background), LsaScorer(background)]


@dataclass(frozen=True)
class RunScores:
    """One run of one system: its three measures and its time."""

    seed: int
    pearson: float
    spearman: float
    query_spearman: float
    seconds: float


@dataclass(frozen=True)
class SystemResult:
    """A system's runs and summaries (intervals: see the module docstring).

    ``pearson_bootstrap`` and ``queries`` are from the first run (seed ``seeds[0]``);
    ``pearson``, ``spearman`` and ``query_spearman`` are over runs (seeds).
    """

    name: str
    stochastic: bool
    runs: tuple[RunScores, ...]
    pearson_bootstrap: Interval
    queries: Interval
    per_query: tuple[float, ...]
    matrix: NDArray[np.float64] = field(repr=False)

    def over_runs(self, measure: str) -> Interval:
        """Mean and Student-t interval of ``measure`` over the runs (no interval for one)."""
        return Interval.student_t([float(getattr(run, measure)) for run in self.runs])

    @property
    def pearson(self) -> float:
        return self.over_runs("pearson").mean

    @property
    def spearman(self) -> float:
        return self.over_runs("spearman").mean

    @property
    def query_spearman(self) -> float:
        return self.over_runs("query_spearman").mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stochastic": self.stochastic,
            "runs": [asdict(run) for run in self.runs],
            "pearson": self.over_runs("pearson").to_dict(),
            "spearman": self.over_runs("spearman").to_dict(),
            "query_spearman": self.over_runs("query_spearman").to_dict(),
            "pearson_bootstrap": self.pearson_bootstrap.to_dict(),
            "query_spearman_over_queries": self.queries.to_dict(),
            "per_query_spearman": list(self.per_query),
        }


@dataclass(frozen=True)
class Difference:
    """System a minus system b: upper-triangle Pearson (paired bootstrap) and per-query
    Spearman (paired over queries), each a point estimate with its 95% interval."""

    a: str
    b: str
    pearson: Interval
    query_spearman: Interval


@dataclass(frozen=True)
class LeeReport:
    """Every system's result, and the shared bootstrap draws for paired differences."""

    systems: tuple[SystemResult, ...]
    seeds: tuple[int, ...]
    resamples: int
    bootstrap: dict[str, NDArray[np.float64]] = field(repr=False)

    def __getitem__(self, name: str) -> SystemResult:
        for system in self.systems:
            if system.name == name:
                return system
        raise KeyError(name)

    def difference(self, a: str, b: str) -> Difference:
        """``a - b`` with paired 95% intervals (bootstrap for Pearson, t over queries)."""
        first, second = self[a], self[b]
        pearson_diff = first.runs[0].pearson - second.runs[0].pearson
        draws = self.bootstrap[a] - self.bootstrap[b]
        per_query = np.asarray(first.per_query) - np.asarray(second.per_query)
        return Difference(
            a, b, Interval.percentile(pearson_diff, draws), Interval.student_t(per_query)
        )

    def rows(self) -> list[list[str]]:
        """A table: system, Pearson [bootstrap CI], Spearman, per-query Spearman [t CI], runs."""
        out = []
        for system in self.systems:
            runs = system.over_runs("pearson")
            spread = "" if runs.n < 2 else f" (seeds: ±{runs.half:.3f})"
            out.append(
                [
                    system.name,
                    system.pearson_bootstrap.text() + spread,
                    f"{system.spearman:.3f}",
                    system.queries.text(),
                    str(len(system.runs)),
                ]
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": list(self.seeds),
            "bootstrap_resamples": self.resamples,
            "systems": [system.to_dict() for system in self.systems],
        }


def _checked(matrix: Any, name: str, n: int) -> NDArray[np.float64]:
    array = np.asarray(matrix, dtype=np.float64)
    if array.shape != (n, n):
        raise ConfigError(f"scorers[{name}]", f"returned shape {array.shape}, expected ({n}, {n})")
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"scorers[{name}]", "returned non-finite similarities")
    return array


def evaluate(
    scorers: Iterable[Scorer],
    corpus: LeeCorpus | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    resamples: int = 1000,
    bootstrap_seed: int = 0,
) -> LeeReport:
    """Run each scorer on the 50 documents and score it against the human matrix.

    Deterministic scorers run once (with ``seeds[0]``); stochastic ones once per seed.

    Raises:
        ConfigError: no seeds, two scorers with one name, or a scorer returned a matrix
            of the wrong shape or with non-finite values.
    """
    corpus = corpus or load_lee()
    if not seeds:
        raise ConfigError("seeds", "must name at least one seed")
    results: list[SystemResult] = []
    for scorer in scorers:
        if any(result.name == scorer.name for result in results):
            raise ConfigError("scorers", f"two scorers are named {scorer.name!r}")
        results.append(_run(scorer, corpus, seeds if scorer.stochastic else seeds[:1]))
    draws = bootstrap_pair_pearson(
        {result.name: result.matrix for result in results},
        corpus.human,
        resamples=resamples,
        seed=bootstrap_seed,
    )
    systems = tuple(
        replace(r, pearson_bootstrap=Interval.percentile(r.runs[0].pearson, draws[r.name]))
        for r in results
    )
    return LeeReport(systems, tuple(seeds), resamples, draws)


def _run(scorer: Scorer, corpus: LeeCorpus, seeds: Sequence[int]) -> SystemResult:
    """One system on every seed; its first run's matrix and queries kept for the CIs."""
    n = len(corpus.documents)
    runs: list[RunScores] = []
    matrices: list[NDArray[np.float64]] = []
    queries: list[NDArray[np.float64]] = []
    for seed in seeds:
        started = time.perf_counter()
        matrix = _checked(scorer.similarity_matrix(corpus.documents, seed=seed), scorer.name, n)
        seconds = time.perf_counter() - started
        pearson, spearman = pair_correlations(matrix, corpus.human)
        per_query = query_spearman(matrix, corpus.human)
        runs.append(RunScores(seed, pearson, spearman, float(np.nanmean(per_query)), seconds))
        matrices.append(matrix)
        queries.append(per_query)
    return SystemResult(
        name=scorer.name,
        stochastic=scorer.stochastic,
        runs=tuple(runs),
        pearson_bootstrap=Interval(runs[0].pearson, math.nan, math.nan, 0),  # set by evaluate
        queries=Interval.student_t(queries[0]),
        per_query=tuple(float(v) for v in queries[0]),
        matrix=matrices[0],
    )
