"""Model-written memories are explicit, budgeted and accounted; plain writes call no model."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmagentos.embeddings.hashing import HashingEmbedder
from llmagentos.exceptions import BudgetExceeded
from llmagentos.kernel.embeddings import EmbeddingService
from llmagentos.llm.testing import FunctionModel
from llmagentos.memory import MemoryManager, NewMemory
from llmagentos.memory.distill import Distiller

TRANSCRIPT = "Alice said the deploy failed at 3pm. Bob restarted the queue and it recovered."


@pytest.fixture
def space(tmp_path: Path):  # type: ignore[no-untyped-def]
    service = EmbeddingService()
    memory = MemoryManager(tmp_path / "m.db", embedder=HashingEmbedder(64), embeddings=service)
    yield memory.for_agent("scribe").semantic
    memory.close()
    service.close()


def test_facts_become_items_with_their_source_and_tokens(space) -> None:  # type: ignore[no-untyped-def]
    model = FunctionModel(lambda request: "- The deploy failed at 3pm.\n- Bob restarted the queue.")
    distiller = Distiller(model, token_budget=10_000)
    written = space.put([NewMemory(TRANSCRIPT, {"day": 1}, key="chat-1")], distill=distiller)
    assert len(written.ids) == 2 and written.cost.model_tokens > 0
    items = [space.get(i) for i in written.ids]
    assert [i.text for i in items] == ["The deploy failed at 3pm.", "Bob restarted the queue."]
    assert all(i.metadata == {"day": 1, "distilled_from": "chat-1"} for i in items)
    assert TRANSCRIPT in model.requests[0].messages[-1].content  # type: ignore[operator]
    again = space.put([NewMemory(TRANSCRIPT, {"day": 1}, key="chat-1")], distill=distiller)
    assert again.ids == written.ids  # keyed: re-distilling replaces, never duplicates


def test_a_spent_budget_stops_the_write_before_anything_is_stored(space) -> None:  # type: ignore[no-untyped-def]
    distiller = Distiller(FunctionModel(lambda r: "A fact. " * 50), token_budget=5)
    space.put([TRANSCRIPT], distill=distiller)
    before = space.count()
    with pytest.raises(BudgetExceeded, match="memory-distiller"):
        space.put(["another text"], distill=distiller)
    assert space.count() == before


def test_plain_writes_call_no_model(space) -> None:  # type: ignore[no-untyped-def]
    written = space.put([TRANSCRIPT])
    assert written.cost.model_tokens == 0
    assert space.get(written.ids[0]).text == TRANSCRIPT


def test_the_embedded_model_distills_a_real_text(space) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("llama_cpp", reason="needs llmagentos[local]")
    distiller = Distiller("local:smollm2", mode="summary", token_budget=2_000, max_tokens=60)
    written = space.put([TRANSCRIPT], distill=distiller)
    assert written.cost.model_tokens > 0
    item = space.get(written.ids[0])
    assert item.text.strip() and item.metadata["distilled_from"] == "#0"
    # (SmolLM2-135M often "summarises" by repeating the text: what it wrote is stored.)
