"""``llmagentos ask``: bad input exits 2 naming the option; answers print with citations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmagentos.cli.main import main


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["How?"], "--docs/--index"),
        (["How?", "--docs", "--index", "x"], "--docs/--index"),
        (["How?", "--docs", "--k", "0"], "--k"),
        (["How?", "--docs", "--mode", "fuzzy"], "--mode"),
        (["How?", "--docs", "--model", "bogus"], "--model"),
        (["How?", "--docs", "--model", "extractive", "--model", "local:smollm2"], "--model"),
        (["How?", "--docs", "--quick"], "--quick"),
        (["How?", "--docs", "--reply", "xml"], "--reply"),
        (["eval", "--reply", "xml"], "--reply"),
        (["eval", "--docs"], "--docs/--index"),
        (["  "], "QUESTION"),
    ],
)
def test_bad_input_exits_2_naming_the_option(capsys, args: list[str], option: str) -> None:
    assert main(["ask", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and option in err


def test_an_unknown_index_exits_2(capsys, tmp_path: Path) -> None:
    code = main(["ask", "How?", "--index", "nope", "--store", str(tmp_path / "m.db"),
                 "--embedder", "hash:256"])  # fmt: skip
    assert code == 2 and "--index: no collection 'nope'" in capsys.readouterr().err


def test_answers_from_an_index_with_citations(capsys, collection) -> None:
    memory, _ = collection
    code = main(["ask", "How many cells does the TextMaze grid have?", "--index", "docs",
                 "--tenant", "t", "--store", str(memory.store.path), "--model", "extractive",
                 "--json"])  # fmt: skip
    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["answer"] == "The TextMaze grid has 25 cells and one dock."
    assert answer["citations"][0]["path"] == "docs/maze.md"
    assert answer["citations"][0]["heading"] == "Layout"


def test_docs_are_indexed_once_and_answered_from(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMAGENTOS_HOME", str(tmp_path))
    argv = ["ask", "How do I run the code-generation evaluation?", "--docs",
            "--model", "extractive", "--embedder", "hash:256"]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "indexed" in first.err and (tmp_path / "qa" / "docs.db").exists()
    assert "cited:" in first.out and "docs/" in first.out
    assert main(argv) == 0
    assert "indexed" not in capsys.readouterr().err  # unchanged docs are not embedded again
