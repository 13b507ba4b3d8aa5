"""Search: documents, chunks, the index manifest, baselines and the Lee evaluation.

* :mod:`~llmagentos.search.documents` — ``.txt``/``.md``/``.html``/``.pdf`` loaders;
* :mod:`~llmagentos.search.chunking` — passages at headings and paragraphs, stable keys;
* :mod:`~llmagentos.search.manifest` — new/modified/deleted files for incremental indexing;
* :mod:`~llmagentos.search.baselines` — TF-IDF, BM25 and LSA similarity (gensim);
* :mod:`~llmagentos.search.lee` — the Lee corpus "query by document" evaluation;
* :mod:`~llmagentos.search.metrics` — correlations, per-query Spearman, intervals.

See docs/search.md. gensim and pypdf come with ``pip install 'llmagentos[search]'`` and
are imported only when a baseline, the Lee data or a PDF is used.
"""

from llmagentos.search.chunking import Chunk, ChunkSettings, chunk_document, chunk_key
from llmagentos.search.documents import (
    MEDIA_TYPES,
    Document,
    Heading,
    find_documents,
    load_document,
    parse_document,
)
from llmagentos.search.lee import (
    Difference,
    LeeCorpus,
    LeeReport,
    Scorer,
    SystemResult,
    baseline_scorers,
    evaluate,
    load_lee,
)
from llmagentos.search.manifest import Changes, FileState, Manifest, ManifestEntry, scan

__all__ = [
    "MEDIA_TYPES",
    "Changes",
    "Chunk",
    "ChunkSettings",
    "Difference",
    "Document",
    "FileState",
    "Heading",
    "LeeCorpus",
    "LeeReport",
    "Manifest",
    "ManifestEntry",
    "Scorer",
    "SystemResult",
    "baseline_scorers",
    "chunk_document",
    "chunk_key",
    "evaluate",
    "find_documents",
    "load_document",
    "load_lee",
    "parse_document",
    "scan",
]
