"""The QA agent's four modules on a small collection: citations, abstention, memory."""

from __future__ import annotations

import json

import pytest

from llmagentos.exceptions import ConfigError, ModelOutputError
from llmagentos.llm.testing import FunctionModel, ScriptedModel
from llmagentos.llm.types import ModelRequest, ModelResponse
from llmagentos.memory import MemoryManager, Namespace
from llmagentos.qa import build_qa_agent
from llmagentos.qa.agent import ask
from llmagentos.qa.passages import index_passages
from llmagentos.qa.types import Answer

from .conftest import PASSAGES

QUESTION = "How many cells does the TextMaze grid have?"


def _reader(request: ModelRequest) -> ModelResponse:
    """A model that reads the prompt: names the number of the passage about cells."""
    prompt = request.messages[-1].content or ""
    for block in prompt.split("\n\n"):
        if "cells" in block and block.startswith("Passage"):
            return ModelResponse(text="The grid has 25 cells.")
    return ModelResponse(text="unknown")


def test_citations_are_retrieved_passages_that_hold_the_answer(collection) -> None:
    memory, namespace = collection
    agent = build_qa_agent(memory, namespace, model=FunctionModel(_reader))
    answer = ask(agent, QUESTION)
    assert answer.text == "The grid has 25 cells."
    retrieved_ids = {p.id for p in answer.retrieved}
    assert answer.citations and {p.id for p in answer.citations} <= retrieved_ids
    assert [p.key for p in answer.citations] == ["maze.md#0"]
    assert answer.citations[0].where == "docs/maze.md > Layout"
    assert "maze.md > Layout" in answer.reason
    # Execution hands back the answer with where each citation comes from.
    observation = agent.last_record.next_observation
    assert observation["answer"] == answer.text
    assert observation["citations"][0]["path"] == "docs/maze.md"
    assert observation["citations"][0]["heading"] == "Layout"


def test_json_replies_cite_by_number(collection) -> None:
    memory, namespace = collection
    seen: list[ModelRequest] = []

    def cite_the_cells_passage(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        prompt = request.messages[-1].content or ""
        number = next(
            int(block.split(":")[0].split()[1])
            for block in prompt.split("\n\n")
            if block.startswith("Passage") and "cells" in block
        )
        return ModelResponse(text=json.dumps({"citations": [number], "answer": "25"}))

    agent = build_qa_agent(
        memory, namespace, model=FunctionModel(cite_the_cells_passage), reply="json"
    )
    answer = ask(agent, QUESTION)
    assert answer.text == "25" and [p.key for p in answer.citations] == ["maze.md#0"]
    assert seen[0].output_schema is not None  # structured output was asked for


def test_abstains_without_asking_when_retrieval_is_weak(collection) -> None:
    memory, namespace = collection
    model = ScriptedModel([])  # any call would fail: nothing left to reply
    agent = build_qa_agent(memory, namespace, model=model)
    answer = ask(agent, "Which Roman emperor built the aqueduct of Segovia?")
    assert answer.abstained and answer.text is None and answer.citations == ()
    assert answer.source == "retrieval" and "weak retrieval" in answer.reason
    assert agent.last_record.reward == 0.0


def test_abstains_when_the_model_does_not_know(collection) -> None:
    memory, namespace = collection
    agent = build_qa_agent(memory, namespace, model=ScriptedModel(["I don't know."]))
    answer = ask(agent, QUESTION)
    assert answer.abstained and "does not know" in answer.reason


def test_withholds_a_number_no_cited_passage_holds(collection) -> None:
    memory, namespace = collection
    agent = build_qa_agent(memory, namespace, model=ScriptedModel(["It has 31 cells."]))
    answer = ask(agent, QUESTION)
    assert answer.abstained and "matches no passage" in answer.reason


def test_a_model_error_abstains_and_says_so(collection) -> None:
    memory, namespace = collection
    agent = build_qa_agent(
        memory, namespace, model=ScriptedModel([ModelOutputError("garbled", model="m")])
    )
    answer = ask(agent, QUESTION)
    assert answer.abstained and "the model failed" in answer.reason


def test_extractive_baseline_returns_the_best_sentence(collection) -> None:
    memory, namespace = collection
    agent = build_qa_agent(memory, namespace, model="extractive")
    answer = ask(agent, QUESTION)
    assert answer.text == "The TextMaze grid has 25 cells and one dock."
    assert [p.key for p in answer.citations] == ["maze.md#0"]


def test_learning_records_the_answer_and_feedback(collection) -> None:
    memory, namespace = collection
    episodic = memory.namespace("t", "qa", "episodic")
    agent = build_qa_agent(memory, namespace, model="extractive", episodic=episodic)
    answer = ask(agent, QUESTION)
    memory_id = agent.last_record.learning["memory_id"]
    item = memory.get(episodic, memory_id)
    assert item.text == f"Q: {QUESTION}\nA: {answer.text}"
    assert item.metadata["citations"][0]["path"] == "docs/maze.md"
    learner = agent.learning_module
    learner.feedback(memory_id, helpful=False, note="wanted the dock")
    assert memory.get(episodic, memory_id).metadata["feedback"] == {
        "helpful": False,
        "note": "wanted the dock",
    }
    ask(agent, "Which Roman emperor built the aqueduct of Segovia?")
    assert memory.count(episodic) == 2


def test_reindexing_by_key_replaces_and_drops_stale_passages(collection) -> None:
    memory, namespace = collection
    assert index_passages(memory, namespace, PASSAGES[:2]) == 2
    assert {i.key for i in memory.list(namespace)} == {"maze.md#0", "maze.md#1"}


def test_bad_settings_name_the_field(collection) -> None:
    memory, namespace = collection
    with pytest.raises(ConfigError, match="k"):
        build_qa_agent(memory, namespace, model="extractive", k=0)
    with pytest.raises(ConfigError, match="min_coverage"):
        build_qa_agent(memory, namespace, model="extractive", min_coverage=2.0)
    with pytest.raises(ConfigError, match="reply"):
        build_qa_agent(memory, namespace, model=ScriptedModel([]), reply="xml")  # type: ignore[arg-type]


def test_answer_to_dict_is_json(collection: tuple[MemoryManager, Namespace]) -> None:
    memory, namespace = collection
    answer = ask(build_qa_agent(memory, namespace, model="extractive"), QUESTION)
    assert isinstance(answer, Answer)
    assert json.loads(json.dumps(answer.to_dict()))["citations"][0]["key"] == "maze.md#0"
