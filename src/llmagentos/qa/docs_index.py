"""``llmagentos ask --docs``: the project's own documentation as a collection.

The wheel ships the package only (``[tool.hatch.build.targets.wheel]``), not ``docs/``.
So the docs are found in this order: a ``docs`` folder inside the installed package (a
distribution that bundles them), else the source checkout the package runs from (an
editable install or ``PYTHONPATH=src``: the folder above ``src/`` holding
``pyproject.toml``). Without either there is nothing to index, and the caller is told.
"""

from __future__ import annotations

from pathlib import Path

from llmagentos.exceptions import ConfigError
from llmagentos.memory import MemoryManager, Namespace
from llmagentos.qa.passages import SourcePassage, fingerprint, index_passages, markdown_passages

__all__ = ["docs_files", "docs_passages", "find_docs", "open_docs_index"]


def find_docs() -> tuple[Path, list[Path]] | None:
    """(the root the paths are shown from, the Markdown files), or ``None``."""
    package = Path(__file__).resolve().parent.parent
    bundled = package / "docs"
    if bundled.is_dir():
        return package, sorted(bundled.glob("*.md"))
    for folder in package.parents:
        if (folder / "pyproject.toml").is_file() and (folder / "docs").is_dir():
            files = sorted((folder / "docs").glob("*.md"))
            readme = folder / "README.md"
            return folder, ([readme] if readme.is_file() else []) + files
    return None


def docs_files() -> tuple[Path, list[Path]]:
    """Like :func:`find_docs`, but raises when there are no docs.

    Raises:
        ConfigError: field ``--docs``: neither a bundled docs folder nor a checkout.
    """
    found = find_docs()
    if found is None or not found[1]:
        raise ConfigError(
            "--docs",
            "no documentation found: the installed package bundles no docs/ and it does not "
            "run from a source checkout (index a folder and use --index instead)",
        )
    return found


def docs_passages() -> list[SourcePassage]:
    """Every passage of README.md and docs/*.md, paths relative to the checkout."""
    root, files = docs_files()
    return [p for f in files for p in markdown_passages(f, name=str(f.relative_to(root)))]


def open_docs_index(
    memory: MemoryManager, *, tenant: str = "local", name: str = "docs"
) -> tuple[Namespace, int, bool]:
    """The docs in ``memory`` (re-indexed only when they changed): the namespace, its
    passage count, and whether it was (re)indexed now."""
    passages = docs_passages()
    namespace = memory.namespace(tenant, name, "semantic")
    stamp = fingerprint(passages)
    # A marker file beside a SQLite store remembers what was indexed, so an unchanged
    # collection is not embedded again (other stores re-index: writes by key are idempotent).
    store_path = getattr(memory.store, "path", None)
    marker = Path(store_path).with_suffix(f".{name}.indexed") if store_path else None
    fresh = marker is not None and marker.is_file() and marker.read_text("utf-8").strip() == stamp
    if fresh and memory.count(namespace) == len(passages):
        return namespace, len(passages), False
    count = index_passages(memory, namespace, passages)
    if marker is not None:
        marker.write_text(stamp + "\n", "utf-8")
    return namespace, count, True
