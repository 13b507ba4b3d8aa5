"""The engine: a folder indexed into a memory namespace, incrementally; bad files skipped;
a killed run resumed with no duplicate and no orphan chunk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from llmagentos.exceptions import ConfigError
from llmagentos.memory import MemoryManager
from llmagentos.search import ChunkSettings
from llmagentos.search.engine import IndexEvent, SearchEngine
from llmagentos.search.manifest import Manifest

ROOT = Path(__file__).resolve().parents[2]
OLD = time.time_ns() - 3600 * 10**9
SMALL = ChunkSettings(target_words=30, overlap_words=5)


def _write(folder: Path, name: str, text: str | bytes, mtime_ns: int = OLD) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def _corpus(folder: Path) -> None:
    _write(folder, "dock.md", "# Charging\n\nThe charging dock is in the south-east corner.\n")
    _write(folder, "flood.txt", "Corridor B floods when it rains; use corridor C instead.")
    _write(
        folder,
        "guide.html",
        "<html><head><title>Lifts</title><script>nothing()</script></head><body>"
        "<h1>Lifts</h1><p>The service lift goes to the basement.</p></body></html>",
    )
    _write(folder, "long.md", "\n\n".join(f"Paragraph {i} " + "word " * 25 for i in range(6)))


def _engine(tmp_path: Path, **kw: object) -> tuple[MemoryManager, SearchEngine]:
    memory = MemoryManager(tmp_path / "memory.db", embedder="hash:256")
    engine = SearchEngine(memory, tmp_path / "manifest.sqlite", chunking=SMALL, **kw)  # type: ignore[arg-type]
    return memory, engine


def _keys(memory: MemoryManager, engine: SearchEngine) -> Counter[str]:
    items = memory.list(engine.namespace, limit=1000)
    return Counter(item.key or "" for item in items)


def test_index_search_and_incremental_reindex(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _corpus(docs)
    memory, engine = _engine(tmp_path)
    events: list[IndexEvent] = []
    report = engine.index(docs, on_event=events.append)
    assert report.added == ["dock.md", "flood.txt", "guide.html", "long.md"]
    assert report.failed == [] and report.chunks_written == sum(_keys(memory, engine).values())
    assert events[0] == IndexEvent("scanned", total=4)
    assert [e.kind for e in events[1:]] == ["indexed"] * 4

    hits = engine.search("where is the charging dock", k=3)
    assert hits[0].source == "dock.md" and hits[0].heading_path == "Charging"
    assert hits[0].text in (docs / "dock.md").read_text(encoding="utf-8")
    lexical = engine.search("basement lift", k=1, mode="lexical")
    assert (lexical[0].source, lexical[0].title) == ("guide.html", "Lifts")
    assert "nothing" not in " ".join(h.text for h in engine.search("nothing", k=10))

    # Nothing changed: nothing read, nothing written.
    again = engine.index(docs)
    assert (again.added, again.updated, again.chunks_written, again.unchanged) == ([], [], 0, 4)

    # Edit one, delete one, add one, touch one.
    before = _keys(memory, engine)
    _write(
        docs,
        "long.md",
        "\n\n".join(f"Paragraph {i} " + "word " * 25 for i in range(3)),
        OLD + 10**9,
    )
    (docs / "flood.txt").unlink()
    _write(docs, "new.txt", "Visitors sign in at the front desk.")
    os.utime(docs / "dock.md", ns=(OLD + 10**9, OLD + 10**9))
    third = engine.index(docs)
    assert (third.added, third.updated, third.deleted, third.touched) == (
        ["new.txt"],
        ["long.md"],
        ["flood.txt"],
        ["dock.md"],
    )
    after = _keys(memory, engine)
    assert all(n == 1 for n in after.values())  # no key twice
    assert not any(key.startswith("flood.txt#") for key in after)
    assert sum(1 for key in after if key.startswith("long.md#")) < sum(
        1 for key in before if key.startswith("long.md#")
    )
    assert {key for key in after if key.startswith("dock.md#")} == {
        key for key in before if key.startswith("dock.md#")
    }
    assert engine.search("front desk", k=1)[0].source == "new.txt"
    assert sorted(engine.sources()) == ["dock.md", "guide.html", "long.md", "new.txt"]
    engine.close()
    memory.close()


def test_bad_documents_are_reported_by_path_and_skipped(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _corpus(docs)
    _write(docs, "broken.pdf", b"%PDF-1.4\n1 0 obj garbage")
    _write(docs, "junk.txt", os.urandom(2000) + b"\x00")
    memory, engine = _engine(tmp_path)
    report = engine.index(docs)
    assert [source for source, _ in report.failed] == ["broken.pdf", "junk.txt"]
    assert "unreadable PDF" in report.failed[0][1] and "binary" in report.failed[1][1]
    assert len(report.added) == 4  # the run went on
    second = engine.index(docs)  # unchanged broken files are not retried, but still named
    assert second.failed == [] and [s for s, _ in second.still_failing] == [
        "broken.pdf",
        "junk.txt",
    ]
    _write(docs, "junk.txt", "now it is text about umbrellas", OLD + 10**9)
    third = engine.index(docs)
    assert third.added == ["junk.txt"] and engine.search("umbrellas", k=1)[0].source == "junk.txt"
    # A good file turned bad loses its old chunks.
    _write(docs, "dock.md", b"\x00\x01\x02" * 100, OLD + 2 * 10**9)
    fourth = engine.index(docs)
    assert [s for s, _ in fourth.failed] == ["dock.md"]
    assert not any(key.startswith("dock.md#") for key in _keys(memory, engine))
    memory.close()


def test_an_index_keeps_to_its_folder(tmp_path: Path) -> None:
    _corpus(tmp_path / "a")
    _corpus(tmp_path / "b")
    memory, engine = _engine(tmp_path)
    engine.index(tmp_path / "a")
    with pytest.raises(ConfigError) as caught:
        engine.index(tmp_path / "b")
    assert caught.value.field == "root"
    other = SearchEngine(
        memory, Manifest.open(tmp_path / "other.sqlite"), index="other", chunking=SMALL
    )
    assert other.index(tmp_path / "b").added  # another index name is another namespace
    assert other.namespace != engine.namespace
    memory.close()


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from llmagentos.memory import MemoryManager
    from llmagentos.search import ChunkSettings
    from llmagentos.search.engine import SearchEngine

    tmp, docs, when, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    memory = MemoryManager(f"{tmp}/memory.db", embedder="hash:256")
    engine = SearchEngine(memory, f"{tmp}/manifest.sqlite",
                          chunking=ChunkSettings(target_words=30, overlap_words=5), batch_chunks=4)
    put, calls = memory.put, [0]

    def dying_put(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)  # keys marked pending, chunks not written
        result = put(*args, **kwargs)
        if calls[0] == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)  # chunks committed, manifest not updated
        return result

    memory.put = dying_put
    engine.index(docs)
    """
)


def _killed_run(tmp_path: Path, docs: Path, when: str, nth: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(tmp_path), str(docs), when, str(nth)],
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_killed_run_resumes_without_duplicates_or_orphans(tmp_path: Path, when: str) -> None:
    docs = tmp_path / "docs"
    for i in range(12):
        _write(docs, f"doc{i:02}.txt", f"document {i} " + " ".join(f"w{i}x{j}" for j in range(50)))
    _killed_run(tmp_path, docs, when, nth=3)
    # Edit a file of the killed batch before resuming: its half-written chunks are orphans
    # unless the pending keys are honoured.
    _write(docs, "doc05.txt", "completely different text now", OLD + 10**9)
    _write(docs, "doc04.txt", "also rewritten", OLD + 10**9)
    memory, engine = _engine(tmp_path, batch_chunks=4)
    report = engine.index(docs)
    assert report.failed == []
    keys = _keys(memory, engine)
    assert all(n == 1 for n in keys.values())  # no duplicate
    manifest_keys = {k for e in engine.manifest.entries().values() for k in e.chunk_keys}
    assert set(keys) == manifest_keys  # no orphan: the store holds exactly the recorded keys
    assert all(not e.pending_keys for e in engine.manifest.entries().values())
    assert len(engine.sources()) == 12
    assert engine.search("completely different", k=1)[0].source == "doc05.txt"
    memory.close()


def test_the_search_agent_runs_one_query_per_episode(tmp_path: Path) -> None:
    from llmagentos.search.agent import ask, build_search_agent

    _corpus(tmp_path / "docs")
    memory, engine = _engine(tmp_path)
    engine.index(tmp_path / "docs")
    agent = build_search_agent(engine, k=3)
    hits, result = ask(agent, "  where is the\n charging dock ", relevant=["dock.md"])
    assert hits[0].source == "dock.md"
    assert (result.length, result.total_reward, result.success) == (1, 1.0, True)
    assert agent.last_record is not None and agent.last_record.reason == "hybrid top-3"
    _, miss = ask(agent, "charging dock", relevant=["flood.txt"])  # judged: a worse ranking
    assert miss.total_reward < 1.0
    assert agent.learning_module.optimizer.rewards == [1.0, miss.total_reward]  # type: ignore[attr-defined]
    memory.close()


def test_reranking_reorders_the_candidates(tmp_path: Path) -> None:
    from llmagentos.llm.testing import FunctionModel
    from llmagentos.search.rerank import ModelReranker

    _corpus(tmp_path / "docs")
    memory, engine = _engine(tmp_path)
    engine.index(tmp_path / "docs")
    # A grader that knows only that lifts matter: whatever the first search ranks first.
    grader = FunctionModel(lambda request: "9" if "lift" in request.messages[-1].content else "2")
    plain = engine.search("where is the charging dock", k=4)
    reranked = engine.search("where is the charging dock", k=4, rerank=ModelReranker(grader))
    assert plain[0].source == "dock.md"
    assert reranked[0].source == "guide.html" and reranked[0].rerank_score == 9.0
    # One grading per candidate: max(k, 30) asked for, so every chunk of this small index.
    assert len(grader.requests) == memory.count(engine.namespace)
    memory.close()
