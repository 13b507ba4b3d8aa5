"""Memory retrievals and sandbox runs have spans of their own, content only on opt-in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmagentos.kernel.embeddings import EmbeddingService
from llmagentos.memory import MemoryManager
from llmagentos.telemetry import configure_telemetry

pytest.importorskip("opentelemetry.sdk", reason="needs llmagentos[telemetry]")


@pytest.mark.parametrize("record_content", [False, True])
def test_a_retrieval_span_names_its_namespace_and_the_items_it_returned(
    tmp_path: Path, record_content: bool
) -> None:
    service = EmbeddingService()
    memory = MemoryManager(str(tmp_path / "m.db"), embedder="hash:64", embeddings=service)
    try:
        space = memory.namespace("acme", "taxi", "semantic")
        ids = memory.put(space, ["the depot is north", "the river is east"]).ids
        telemetry = configure_telemetry("memory", record_content=record_content)
        result = memory.search(space, "where is the depot", k=1)
        (found,) = [s for s in telemetry.spans() if s.name == "retrieval acme/taxi/semantic"]
    finally:
        memory.close()
        service.close()
    attributes = found.attributes
    assert attributes["gen_ai.operation.name"] == "retrieval"
    assert attributes["llmagentos.memory.hits"] == len(result.hits) == 1
    documents = json.loads(attributes["gen_ai.retrieval.documents"])
    assert documents[0]["id"] == result.hits[0].item.id and documents[0]["id"] in ids
    assert ("text" in documents[0]) is record_content
    assert ("gen_ai.retrieval.query.text" in attributes) is record_content


@pytest.mark.skipif(shutil.which("bwrap") is None and shutil.which("unshare") is None,
                    reason="needs a sandbox backend")  # fmt: skip
def test_a_sandbox_run_has_a_span_with_its_exit_and_limits() -> None:
    from llmagentos.sandbox import Sandbox

    telemetry = configure_telemetry("memory")
    result = Sandbox().run_python("import sys; sys.exit(3)")
    (run,) = [s for s in telemetry.spans() if s.name == "sandbox run"]
    assert result.exit_code == 3
    assert run.attributes["llmagentos.sandbox.exit_code"] == 3
    assert run.attributes["llmagentos.sandbox.timed_out"] is False
    assert run.attributes["llmagentos.sandbox.backend"] in ("bwrap", "unshare")
