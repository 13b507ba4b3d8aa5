"""Workspace file tools: the four operations, and every way out of the root refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmagentos.exceptions import ConfigError, PathRefused, PatternError, ToolError
from llmagentos.llm.types import ToolCall
from llmagentos.tools.files import Workspace


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace root and a sibling 'outside' folder holding a secret."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET\n")
    (root / "a.txt").write_text("alpha\nbeta\ngamma\n")
    (root / "src").mkdir()
    (root / "src" / "main.py").write_text("def main():\n    return 42\n")
    (root / "src" / "util.py").write_text("import os\nVALUE = 'beta'\n")
    return root, outside


@pytest.fixture
def ws(tree: tuple[Path, Path]) -> Workspace:
    return Workspace(tree[0])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# -- the operations ------------------------------------------------------------------------


def test_read_whole_file_and_a_line_window(ws: Workspace) -> None:
    whole = ws.read_file("a.txt")
    assert whole["content"] == "alpha\nbeta\ngamma\n"
    assert whole["total_lines"] == 3 and not whole["truncated"]
    part = ws.read_file("a.txt", offset=1, limit=1)
    assert part["content"] == "beta\n" and part["lines"] == 1 and part["truncated"]
    assert ws.read_file("./src//main.py")["path"] == "src/main.py"


def test_write_creates_parents_and_replaces_atomically(
    ws: Workspace, tree: tuple[Path, Path]
) -> None:
    root = tree[0]
    result = ws.write_file("new/deep/file.txt", "héllo\n")
    assert result == {"path": "new/deep/file.txt", "bytes": len("héllo\n".encode())}
    assert (root / "new" / "deep" / "file.txt").read_text() == "héllo\n"
    ws.write_file("a.txt", "replaced")
    assert (root / "a.txt").read_text() == "replaced"
    leftovers = [p.name for p in root.rglob("*.tmp")]
    assert leftovers == []


def test_list_dir_flat_and_recursive(ws: Workspace) -> None:
    flat = ws.list_dir()
    assert [(e["path"], e["type"]) for e in flat["entries"]] == [("a.txt", "file"), ("src", "dir")]
    deep = ws.list_dir(".", recursive=True)
    assert [e["path"] for e in deep["entries"]] == ["a.txt", "src", "src/main.py", "src/util.py"]
    assert ws.list_dir("src")["entries"][0]["path"] == "src/main.py"


def test_list_dir_is_bounded(tree: tuple[Path, Path]) -> None:
    listing = Workspace(tree[0], max_entries=2).list_dir(".", recursive=True)
    assert len(listing["entries"]) == 2 and listing["truncated"]


def test_search_regex_literal_glob_and_bounds(ws: Workspace, tree: tuple[Path, Path]) -> None:
    found = ws.search(r"bet+a")
    assert {(m["path"], m["line"]) for m in found["matches"]} == {("a.txt", 2), ("src/util.py", 2)}
    assert ws.search("beta", glob="*.py")["matches"] == [
        {"path": "src/util.py", "line": 2, "text": "VALUE = 'beta'"}
    ]
    assert ws.search("(", literal=True)["matches"][0]["path"] == "src/main.py"
    assert ws.search("return", path="src/main.py")["matches"][0]["line"] == 2
    (tree[0] / "many.txt").write_text("x\n" * 50)
    bounded = Workspace(tree[0], max_results=5).search("x")
    assert len(bounded["matches"]) == 5 and bounded["truncated"]
    with pytest.raises(PatternError, match="missing \\)"):
        ws.search("(")


def test_search_skips_binary_and_large_files(tree: tuple[Path, Path]) -> None:
    root = tree[0]
    (root / "blob.bin").write_bytes(b"beta\x00\x01\x02")
    (root / "big.txt").write_text("beta\n" * 100)
    found = Workspace(root, max_read_bytes=200).search("beta")
    assert {m["path"] for m in found["matches"]} == {"a.txt", "src/util.py"}


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../outside/secret.txt", "'..'"),
        ("src/../../outside/secret.txt", "'..'"),
        ("..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("~/secret", "absolute"),
        ("C:\\Windows\\win.ini", "absolute"),
        ("\\\\server\\share", "absolute"),
        ("a.txt\x00.png", "NUL"),
        ("", "empty"),
    ],
)
def test_bad_paths_are_refused_by_every_operation(ws: Workspace, path: str, reason: str) -> None:
    for call in (
        lambda: ws.read_file(path),
        lambda: ws.write_file(path, "pwned"),
        lambda: ws.list_dir(path),
        lambda: ws.search("x", path=path),
    ):
        with pytest.raises(PathRefused, match=reason) as caught:
            call()
        assert isinstance(caught.value, ToolError) and caught.value.path == path


def test_symlink_to_a_file_outside_is_refused(ws: Workspace, tree: tuple[Path, Path]) -> None:
    root, outside = tree
    before = snapshot(outside)
    (root / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(PathRefused, match="outside the workspace"):
        ws.read_file("link.txt")
    with pytest.raises(PathRefused, match="outside the workspace"):
        ws.write_file("link.txt", "pwned")
    assert snapshot(outside) == before
    # Listing shows the link but never follows it; search does not read through it.
    entries = {e["path"]: e["type"] for e in ws.list_dir()["entries"]}
    assert entries["link.txt"] == "symlink"
    assert ws.search("SECRET")["matches"] == []


def test_symlinked_parent_folder_is_refused(ws: Workspace, tree: tuple[Path, Path]) -> None:
    root, outside = tree
    before = snapshot(outside)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    for call in (
        lambda: ws.read_file("escape/secret.txt"),
        lambda: ws.write_file("escape/new.txt", "pwned"),
        lambda: ws.write_file("escape/sub/new.txt", "pwned"),
        lambda: ws.list_dir("escape"),
        lambda: ws.search("SECRET", path="escape"),
    ):
        with pytest.raises(PathRefused, match="outside the workspace"):
            call()
    assert ws.list_dir(".", recursive=True)["entries"][1] == {
        "path": "escape", "type": "symlink", "size": len(str(outside))
    }  # fmt: skip
    assert ws.search("SECRET")["matches"] == []
    assert snapshot(outside) == before
    assert not (outside / "new.txt").exists() and not (outside / "sub").exists()


def test_symlink_inside_the_root_is_followed_to_its_real_path(
    ws: Workspace, tree: tuple[Path, Path]
) -> None:
    root = tree[0]
    (root / "alias.txt").symlink_to(root / "a.txt")
    assert ws.read_file("alias.txt")["path"] == "a.txt"
    ws.write_file("alias.txt", "through the alias")
    assert (root / "a.txt").read_text() == "through the alias"
    assert (root / "alias.txt").is_symlink()


def test_a_folder_swapped_for_a_symlink_after_the_check_is_refused(
    ws: Workspace, tree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOCTOU: the path checks out, then 'src' becomes a symlink out before the open."""
    root, outside = tree
    (outside / "main.py").write_text("outside\n")
    before = snapshot(outside)
    real_resolve = ws.resolve

    def resolve_then_swap(path: str) -> tuple[str, ...]:
        if (root / "src").is_symlink():  # undo the previous call's swap: the check passes
            (root / "src").unlink()
            (root / "src.moved").rename(root / "src")
        parts = real_resolve(path)
        (root / "src").rename(root / "src.moved")
        (root / "src").symlink_to(outside, target_is_directory=True)
        return parts

    monkeypatch.setattr(ws, "resolve", resolve_then_swap)
    with pytest.raises(PathRefused, match="swapped"):
        ws.read_file("src/main.py")
    with pytest.raises(PathRefused, match="swapped"):
        ws.write_file("src/main.py", "pwned")
    with pytest.raises(PathRefused, match="swapped"):
        ws.write_file("src/new.py", "pwned")
    with pytest.raises(PathRefused, match="swapped"):
        ws.list_dir("src")
    assert snapshot(outside) == before


def test_a_file_swapped_for_a_symlink_after_the_check_is_refused(
    ws: Workspace, tree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside = tree
    real_resolve = ws.resolve

    def resolve_then_swap(path: str) -> tuple[str, ...]:
        parts = real_resolve(path)
        (root / "a.txt").unlink()
        (root / "a.txt").symlink_to(outside / "secret.txt")
        return parts

    monkeypatch.setattr(ws, "resolve", resolve_then_swap)
    with pytest.raises(PathRefused, match="symlink"):
        ws.read_file("a.txt")


def test_a_hard_link_to_a_file_outside_is_refused(ws: Workspace, tree: tuple[Path, Path]) -> None:
    root, outside = tree
    os.link(outside / "secret.txt", root / "hard.txt")
    with pytest.raises(PathRefused, match="hard link"):
        ws.read_file("hard.txt")
    assert ws.search("SECRET")["matches"] == []
    ws.write_file("hard.txt", "replaced")  # replaces the name, never the linked file
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"
    assert (root / "hard.txt").read_text() == "replaced"


def test_devices_fifos_and_folders_are_not_files(ws: Workspace, tree: tuple[Path, Path]) -> None:
    root = tree[0]
    os.mkfifo(root / "pipe")
    with pytest.raises(PathRefused, match="not a regular file"):
        ws.read_file("pipe")  # must not block waiting for a writer
    with pytest.raises(PathRefused, match="not a file"):
        ws.write_file("pipe", "x")
    with pytest.raises(PathRefused, match="folder"):
        ws.read_file("src")
    with pytest.raises(PathRefused, match="not a file"):
        ws.write_file("src", "x")
    with pytest.raises(PathRefused, match="workspace folder"):
        ws.write_file(".", "x")
    if Path("/dev/null").exists():
        (root / "null").symlink_to("/dev/null")
        with pytest.raises(PathRefused):
            ws.read_file("null")


def test_size_caps_on_read_and_write(tree: tuple[Path, Path]) -> None:
    root = tree[0]
    (root / "big.txt").write_text("x" * 1000)
    small = Workspace(root, max_read_bytes=100, max_write_bytes=10, max_read_chars=5)
    with pytest.raises(PathRefused, match="too large") as caught:
        small.read_file("big.txt")
    assert "big.txt" in str(caught.value)
    with pytest.raises(PathRefused, match="too large"):
        small.write_file("out.txt", "y" * 11)
    assert not (root / "out.txt").exists()
    cut = small.read_file("a.txt")
    assert cut["content"] == "alpha" and cut["truncated"]


def test_binary_and_non_utf8_files_are_refused(ws: Workspace, tree: tuple[Path, Path]) -> None:
    (tree[0] / "b.bin").write_bytes(b"\x00\x01")
    (tree[0] / "latin.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(PathRefused, match="binary"):
        ws.read_file("b.bin")
    with pytest.raises(PathRefused, match="UTF-8"):
        ws.read_file("latin.txt")


def test_missing_paths_say_so(ws: Workspace) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        ws.read_file("nope.txt")
    with pytest.raises(FileNotFoundError, match="nope"):
        ws.list_dir("nope")


def test_a_bad_root_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        Workspace(tmp_path / "missing")


# -- through the tool layer ----------------------------------------------------------------


def test_tools_are_in_the_files_namespace_with_schemas(ws: Workspace) -> None:
    tools = ws.tools()
    assert [t.qualified_name for t in tools] == [
        "files.read_file", "files.write_file", "files.list_dir", "files.search"
    ]  # fmt: skip
    read = tools[0].spec
    assert read.parameters["required"] == ["path"]
    assert "relative to the workspace root" in read.parameters["properties"]["path"]["description"]


async def test_tool_calls_succeed_and_refusals_become_error_results(
    ws: Workspace, tree: tuple[Path, Path]
) -> None:
    registry = ws.registry()
    ok = await registry.run_call(
        ToolCall(id="1", name="files.write_file", arguments='{"path": "n.txt", "content": "hi"}')
    )
    assert ok.ok and ok.value == {"path": "n.txt", "bytes": 2}
    refused = await registry.run_call(
        ToolCall(
            id="2", name="files.read_file", arguments=json.dumps({"path": "../outside/secret.txt"})
        )
    )
    assert not refused.ok
    assert refused.error is not None and "PathRefused" in refused.error
    assert "../outside/secret.txt" in refused.error
    escaped = await registry.run_call(
        ToolCall(id="3", name="files.write_file", arguments='{"path": "/tmp/x", "content": "x"}')
    )
    assert not escaped.ok and "absolute" in (escaped.error or "")
    assert not (tree[1] / "x").exists()
