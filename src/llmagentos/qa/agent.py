"""The question-answering agent: retrieve → answer with citations → return → remember.

::

    memory = MemoryManager("runs/qa.db", embedder="local:minilm")
    docs = memory.namespace("local", "docs", "semantic")
    agent = build_qa_agent(memory, docs, model="local:smollm2")
    answer = ask(agent, "How do I run the code-generation evaluation?")
    answer.text, [p.where for p in answer.citations]

Perception (:class:`~llmagentos.qa.perception.RetrievalPerception`) searches the
collection; planning (:mod:`llmagentos.qa.planning`) answers from numbered passages
or abstains; execution (:class:`AnswerExecution`) hands back the answer and where each
citation comes from; learning (:class:`EpisodicQALearning`) writes each question and
answer to episodic memory, where :meth:`EpisodicQALearning.feedback` can mark it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from llmagentos.agent import Agent
from llmagentos.exceptions import ConfigError, ModuleOutputError
from llmagentos.memory import MemoryItem, MemoryManager, Namespace, NewMemory, SearchMode
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.planning import PlanningModule
from llmagentos.qa.perception import RetrievalPerception
from llmagentos.qa.planning import (
    DEFAULT_MIN_COVERAGE,
    ExtractivePlanning,
    GroundedAnswerPlanning,
    ReplyFormat,
)
from llmagentos.qa.types import Answer
from llmagentos.types import Outcome, Transition

if TYPE_CHECKING:
    from llmagentos.llm.base import Model

__all__ = ["EXTRACTIVE", "AnswerExecution", "EpisodicQALearning", "ask", "build_qa_agent"]

EXTRACTIVE = "extractive"
"""The model id of the no-LLM baseline planner."""


class AnswerExecution(ExecutionModule):
    """Returns the answer as a JSON-able observation (answer, citations with path and
    heading); the reward is 1.0 for an answer and 0.0 for an abstention."""

    def perform(self, action: Any) -> Outcome:
        if not isinstance(action, Answer):
            raise ModuleOutputError(
                "execution", f"expected an Answer to return (got {type(action).__name__})"
            )
        return Outcome(
            action.to_dict(), 0.0 if action.abstained else 1.0,
            info={"abstained": action.abstained, "source": action.source},
        )  # fmt: skip


class EpisodicQALearning(LearningModule):
    """Records each question and answer in an episodic namespace (``None``: records nothing).

    The item's text is ``Q: ...\\nA: ...``; its metadata holds the answer, whether it
    abstained, the cited paths and headings, and the reason. The step's learning report
    is ``{"memory_id": ...}``, the id :meth:`feedback` takes.
    """

    def __init__(
        self, memory: MemoryManager | None = None, namespace: Namespace | None = None
    ) -> None:
        super().__init__()
        if (memory is None) != (namespace is None):
            raise ConfigError("namespace", "give both memory and namespace, or neither")
        self.memory, self.namespace = memory, namespace

    def update(self, transition: Transition) -> dict[str, Any] | None:
        if self.memory is None or self.namespace is None:
            return None
        answer = transition.action
        if not isinstance(answer, Answer):
            return None
        text = (
            f"Q: {answer.question}\nA: {answer.text if answer.text is not None else '(abstained)'}"
        )
        metadata = {
            "question": answer.question,
            "answer": answer.text,
            "abstained": answer.abstained,
            "source": answer.source,
            "reason": answer.reason,
            "citations": [
                {"path": p.path, "heading": p.heading, "key": p.key} for p in answer.citations
            ],
            "asked_at": time.time(),
        }
        result = self.memory.put(self.namespace, [NewMemory(text, metadata)])
        return {"memory_id": result.ids[0]}

    def feedback(self, memory_id: str, *, helpful: bool, note: str = "") -> MemoryItem:
        """Mark a recorded answer helpful or not (metadata ``feedback``)."""
        if self.memory is None or self.namespace is None:
            raise ConfigError("memory", "this learner records nothing: build it with a namespace")
        item = self.memory.get(self.namespace, memory_id)
        metadata = dict(item.metadata or {})
        metadata["feedback"] = {"helpful": bool(helpful), "note": note}
        return self.memory.update(self.namespace, memory_id, metadata=metadata)


def build_qa_agent(
    memory: MemoryManager,
    namespace: Namespace,
    *,
    model: Model | str = "local:smollm2",
    k: int = 5,
    shown: int = 3,
    mode: SearchMode = "hybrid",
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    reply: ReplyFormat = "text",
    episodic: Namespace | None = None,
    name: str = "qa",
) -> Agent:
    """The QA agent over ``namespace``. ``model`` is a Model, a model id (through the
    kernel), or ``"extractive"`` for the no-LLM baseline; ``reply`` the model's reply
    format (see :class:`~llmagentos.qa.planning.GroundedAnswerPlanning`); ``episodic``
    is where Q/A pairs are recorded (none by default)."""
    planning: PlanningModule
    if model == EXTRACTIVE:
        planning = ExtractivePlanning(shown=shown, min_coverage=min_coverage)
    else:
        from llmagentos.modules.llm_planning import resolve_model

        planning = GroundedAnswerPlanning(
            resolve_model(model, agent=name), reply=reply, shown=shown, min_coverage=min_coverage
        )
    agent = Agent(
        RetrievalPerception(memory, namespace, k=k, mode=mode),
        planning,
        AnswerExecution(),
        EpisodicQALearning(memory if episodic else None, episodic),
        name=name,
    )
    agent.reset()
    return agent


def ask(agent: Agent, question: str) -> Answer:
    """One question through the agent's four modules; the answer it returned."""
    action = agent.act(question)
    agent.step(action)
    if not isinstance(action, Answer):
        raise ModuleOutputError("planning", f"expected an Answer (got {type(action).__name__})")
    return action
