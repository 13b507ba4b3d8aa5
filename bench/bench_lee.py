"""The Lee corpus: the search engine against TF-IDF, BM25 and LSA, in one run.

Query by document on the 50 Lee documents (llmagentos.search.lee): each system's 50 x 50
similarity matrix against the human judgments, Pearson and Spearman over the 1,225
pairs (95% bootstrap over documents, draws shared by the systems) and the mean
per-query Spearman (95% t over the 50 queries). Baselines fit on lee_background.cor
(gensim's Lee protocol; full mode adds the same fit on the 50 documents); the engine
indexes only the 50 documents into a fresh memory store. LSA runs once per seed.

Not a timing: a finding, with three checks: LSA reproduces the published ~0.6, and the
engine's hybrid search against the better of TF-IDF and BM25 on each measure.
BLAS is held to one thread (results are the same; on 2 shared cores OpenBLAS's second
thread only spins).

    python bench/bench_lee.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import BenchResult, Check

NAME = "lee_search"
PUBLISHED_LSA_PEARSON = 0.6  # Lee, Pincombe & Welsh (2005); gensim's test asserts > 0.6


def run(quick: bool) -> BenchResult:
    import scipy.linalg  # noqa: F401  (its OpenBLAS loaded, so the limit below reaches it)
    from threadpoolctl import threadpool_limits

    from llmagentos.search import baseline_scorers, evaluate, load_lee
    from llmagentos.search.lee_engine import EngineScorer

    corpus = load_lee()
    seeds = (0, 1) if quick else (0, 1, 2, 3, 4)
    resamples = 300 if quick else 2000
    scorers = list(baseline_scorers(corpus))
    if not quick:
        scorers += baseline_scorers(corpus, fit="documents")
    engines = [EngineScorer("lexical"), EngineScorer("hybrid")]
    if not quick:
        engines += [EngineScorer("vector"), EngineScorer("hybrid", embedder="hash:256")]
    with threadpool_limits(limits=1, user_api="blas"):
        report = evaluate([*scorers, *engines], corpus, seeds=seeds, resamples=resamples)

    rows = [
        [*row, f"{sum(r.seconds for r in s.runs) / len(s.runs):.2f}"]
        for row, s in zip(report.rows(), report.systems, strict=True)
    ]
    tfidf, bm25 = "TF-IDF (fit on background)", "BM25 (fit on background)"
    lsa, hybrid = "LSA-200 (fit on background)", engines[1].name
    lexical_best = {
        measure: max((report[tfidf], report[bm25]), key=lambda s: getattr(s, measure))
        for measure in ("pearson", "query_spearman")
    }
    notes = []
    pairs = [(hybrid, tfidf), (hybrid, bm25), (hybrid, lsa), (engines[0].name, bm25)]
    if not quick:
        pairs += [(engines[2].name, tfidf), (hybrid, engines[2].name)]
    differences = {}
    for a, b in pairs:
        d = report.difference(a, b)
        differences[f"{a} - {b}"] = {
            "pearson": d.pearson.to_dict(),
            "query_spearman": d.query_spearman.to_dict(),
        }
        notes.append(
            f"{a} - {b}: Pearson {d.pearson.text()}, per-query Spearman {d.query_spearman.text()}"
        )
    checks = [
        Check(
            name=f"{NAME}_lsa_reproduction",
            measured=f"LSA Pearson {report[lsa].pearson:.3f}",
            baseline=f"published {PUBLISHED_LSA_PEARSON}",
            ratio=report[lsa].pearson / PUBLISHED_LSA_PEARSON,
            target=1.0,
            direction=">=",
        ),
        *(
            Check(
                name=f"{NAME}_{measure}",
                measured=f"engine hybrid {getattr(report[hybrid], measure):.3f}",
                baseline=f"{best.name.split(' ')[0]} {getattr(best, measure):.3f}",
                ratio=getattr(report[hybrid], measure) / getattr(best, measure),
                target=1.0,
                direction=">=",
                note="the engine against the better lexical baseline",
            )
            for measure, best in lexical_best.items()
        ),
    ]
    return BenchResult(
        name=NAME,
        title=f"Lee corpus, query by document: {len(report.systems)} systems, seeds {seeds}",
        columns=[
            "system",
            "Pearson [95% bootstrap]",
            "Spearman",
            "per-query Spearman [95% t]",
            "runs",
            "s/run",
        ],
        rows=rows,
        checks=checks,
        params={"seeds": list(seeds), "bootstrap_resamples": resamples, "quick": quick},
        data={"report": report.to_dict(), "differences": differences},
        notes=notes,
    )


if __name__ == "__main__":
    from _common import print_table

    print_table(run("--quick" in sys.argv))
