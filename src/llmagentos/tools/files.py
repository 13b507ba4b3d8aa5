"""Workspace file tools: read, write, list and search, confined to one directory.

A :class:`Workspace` is a root folder an agent may work in. Every path it is given is
relative to the root and is refused (:class:`~llmagentos.exceptions.PathRefused`, naming
the path and the reason) when it is absolute, holds a ``..`` component or a NUL byte,
resolves outside the root (a symlink pointing out, or a symlinked parent folder), names
a device, FIFO or socket or a hard-linked file, or is larger than the workspace's caps.

Paths are checked twice: first resolved with ``os.path.realpath`` and compared with the
root, then opened one component at a time from a descriptor of the root with
``O_NOFOLLOW`` (``openat``), so a folder swapped for a symlink between the check and the
use makes the call fail instead of escaping. Writes are atomic (a temporary file in the
same folder, then a rename) and never follow a symlink.

:meth:`Workspace.tools` exposes the methods as ``@tool`` functions in the ``files``
namespace; through the tool layer a refusal becomes ``ToolResult(ok=False, error=...)``.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmagentos.exceptions import ConfigError, PathRefused, PatternError
from llmagentos.tools.base import FunctionTool, ToolRegistry, tool
from llmagentos.tools.patterns import compile_line_pattern

__all__ = ["PathRefused", "Workspace"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_MAX_LINE = 2000  # search matches are made on at most this many characters of a line
_MAX_GLOB = 255  # a file name's length: fnmatch compiles the glob to a regex


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


class Workspace:
    """One folder an agent may read and write, and nothing outside it.

    Args:
        root: the folder (must exist).
        max_read_bytes: files larger than this are refused by ``read_file`` and skipped
            by ``search``.
        max_write_bytes: the largest content ``write_file`` accepts (UTF-8 bytes).
        max_read_chars: the most text one ``read_file`` call returns (use ``offset`` and
            ``limit`` to page through longer files).
        max_entries: the most entries ``list_dir`` returns.
        max_results: the most matches ``search`` returns.
        search_seconds: the time one ``search`` may take; past it the matches found so
            far come back with ``timed_out`` and ``truncated`` set.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        max_read_bytes: int = 2_000_000,
        max_write_bytes: int = 1_000_000,
        max_read_chars: int = 100_000,
        max_entries: int = 1000,
        max_results: int = 100,
        search_seconds: float = 5.0,
    ) -> None:
        real = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real):
            raise ConfigError("root", f"the workspace root {os.fspath(root)!r} is not a folder")
        for name, value in (
            ("max_read_bytes", max_read_bytes),
            ("max_write_bytes", max_write_bytes),
            ("max_read_chars", max_read_chars),
            ("max_entries", max_entries),
            ("max_results", max_results),
        ):
            if value < 1:
                raise ConfigError(name, f"must be >= 1 (got {value})")
        if not search_seconds > 0:
            raise ConfigError("search_seconds", f"must be > 0 (got {search_seconds})")
        self.root = Path(real)
        self.max_read_bytes = max_read_bytes
        self.max_write_bytes = max_write_bytes
        self.max_read_chars = max_read_chars
        self.max_entries = max_entries
        self.max_results = max_results
        self.search_seconds = search_seconds

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- paths ----------------------------------------------------------------------------

    def resolve(self, path: str) -> tuple[str, ...]:
        """The components of ``path`` below the root, after every check; ``()`` is the root.

        Raises:
            PathRefused: the path is empty, absolute, has ``..`` or a NUL byte, or
                resolves outside the root.
        """
        if not isinstance(path, str) or not path.strip():
            raise PathRefused(str(path), "the path is empty")
        if "\x00" in path:
            raise PathRefused(path, "the path contains a NUL byte")
        if os.path.isabs(path) or path.startswith(("\\", "~")) or re.match(r"^[A-Za-z]:", path):
            raise PathRefused(path, "absolute paths are not allowed; give a path in the workspace")
        parts = [p for p in re.split(r"[/\\]+", path) if p not in ("", ".")]
        if ".." in parts:
            raise PathRefused(path, "'..' is not allowed: paths must stay inside the workspace")
        root = str(self.root)
        real = os.path.realpath(os.path.join(root, *parts))
        if real != root and not real.startswith(root + os.sep):
            raise PathRefused(path, "it resolves outside the workspace (through a symlink)")
        return tuple(Path(real).relative_to(self.root).parts)

    def _shown(self, parts: tuple[str, ...]) -> str:
        return "/".join(parts) or "."

    def _walk(self, path: str, parts: tuple[str, ...], *, create: bool = False) -> int:
        """A descriptor of the folder ``parts``, opened component by component from the
        root without following any symlink (missing folders made when ``create``)."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts:
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise FileNotFoundError(
                            f"no such folder in the workspace: {path!r}"
                        ) from None
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as err:
                    if err.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise PathRefused(
                            path, f"{part!r} is not a folder (or was swapped for a symlink)"
                        ) from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_file(self, path: str, parts: tuple[str, ...]) -> int:
        if not parts:
            raise PathRefused(path, "that is the workspace folder, not a file")
        parent = self._walk(path, parts[:-1])
        try:
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            raise FileNotFoundError(f"no such file in the workspace: {path!r}") from None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise PathRefused(path, "it is a symlink (swapped in after the check)") from None
            raise
        finally:
            os.close(parent)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
            raise PathRefused(path, f"it is {kind}, not a regular file")
        if info.st_nlink > 1:
            # A hard link may be a file outside the root under a name inside it; nothing
            # in the path shows it, so any file with more than one name is refused.
            os.close(fd)
            raise PathRefused(path, "it is a hard link (the file has other names)")
        if info.st_size > self.max_read_bytes:
            os.close(fd)
            raise PathRefused(
                path, f"the file is too large ({info.st_size} bytes > {self.max_read_bytes})"
            )
        return fd

    def _read_text(self, path: str, parts: tuple[str, ...]) -> str:
        fd = self._open_file(path, parts)
        with os.fdopen(fd, "rb") as file:
            data = file.read(self.max_read_bytes + 1)
        if len(data) > self.max_read_bytes:
            raise PathRefused(path, f"the file is too large (> {self.max_read_bytes} bytes)")
        if b"\x00" in data[:8192]:
            raise PathRefused(path, "it is a binary file, not text")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise PathRefused(path, "it is not UTF-8 text") from None

    # -- the four operations --------------------------------------------------------------

    def read_file(self, path: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """Read a text file, optionally only lines ``offset`` .. ``offset + limit - 1``.

        Returns ``{"path", "content", "offset", "lines", "total_lines", "truncated"}``;
        ``truncated`` is true when more lines follow or the text was cut at
        ``max_read_chars``.
        """
        if offset < 0 or (limit is not None and limit < 1):
            raise ValueError("offset must be >= 0 and limit >= 1")
        parts = self.resolve(path)
        lines = self._read_text(path, parts).splitlines(keepends=True)
        end = len(lines) if limit is None else min(len(lines), offset + limit)
        content = "".join(lines[offset:end])
        truncated = end < len(lines)
        if len(content) > self.max_read_chars:
            content, truncated = content[: self.max_read_chars], True
        return {
            "path": self._shown(parts),
            "content": content,
            "offset": offset,
            "lines": max(0, end - offset),
            "total_lines": len(lines),
            "truncated": truncated,
        }

    def write_file(self, path: str, content: str) -> dict[str, Any]:
        """Write ``content`` to a file atomically, making missing parent folders.

        Returns ``{"path", "bytes"}``.
        """
        data = content.encode("utf-8")
        if len(data) > self.max_write_bytes:
            raise PathRefused(
                path, f"the content is too large ({len(data)} bytes > {self.max_write_bytes})"
            )
        parts = self.resolve(path)
        if not parts:
            raise PathRefused(path, "that is the workspace folder, not a file")
        parent = self._walk(path, parts[:-1], create=True)
        name = parts[-1]
        temporary = f".{name}.{os.getpid()}.{id(data):x}.tmp"
        try:
            try:
                existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None and not stat.S_ISREG(existing.st_mode):
                raise PathRefused(path, f"it exists and is a {_kind(existing.st_mode)}, not a file")
            flags = (
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
            )
            fd = os.open(temporary, flags, 0o644, dir_fd=parent)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                # rename() replaces a symlink itself, never its target.
                os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary, dir_fd=parent)
                raise
        finally:
            os.close(parent)
        return {"path": self._shown(parts), "bytes": len(data)}

    def _entries(
        self, fd: int, prefix: tuple[str, ...]
    ) -> Iterator[tuple[tuple[str, ...], str, int]]:
        """(parts, kind, size) of a folder's entries, sorted by name, not following links."""
        with os.scandir(fd) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            yield (*prefix, entry.name), _kind(info.st_mode), info.st_size

    def _tree(
        self, path: str, parts: tuple[str, ...], recursive: bool
    ) -> Iterator[tuple[tuple[str, ...], str, int, int]]:
        """(parts, kind, size, parent fd) of every entry under ``parts``, depth first.

        The parent descriptor is valid only until the next item is requested.
        """
        fd = self._walk(path, parts)
        try:
            for child, kind, size in self._entries(fd, parts):
                yield child, kind, size, fd
                if recursive and kind == "dir":
                    yield from self._tree(path, child, recursive)
        finally:
            os.close(fd)

    def list_dir(self, path: str = ".", recursive: bool = False) -> dict[str, Any]:
        """List a folder (its whole tree when ``recursive``); symlinks are listed, never
        followed.

        Returns ``{"path", "entries": [{"path", "type", "size"}], "truncated"}``.
        """
        parts = self.resolve(path)
        entries: list[dict[str, Any]] = []
        truncated = False
        for child, kind, size, _ in self._tree(path, parts, recursive):
            if len(entries) >= self.max_entries:
                truncated = True
                break
            entries.append({"path": "/".join(child), "type": kind, "size": size})
        return {"path": self._shown(parts), "entries": entries, "truncated": truncated}

    def search(
        self,
        pattern: str,
        path: str = ".",
        glob: str | None = None,
        literal: bool = False,
    ) -> dict[str, Any]:
        """Find lines matching a regular expression (or ``literal`` text) in text files.

        Patterns run on RE2 (:mod:`llmagentos.tools.patterns`): matching time is linear
        in the text, so no pattern can stall the process; the whole search stops after
        ``search_seconds``.

        Args:
            pattern: a regular expression in RE2 syntax, or plain text with ``literal``.
            path: the folder (or file) to search, in the workspace.
            glob: only files whose name matches this (``*.py``).
            literal: match ``pattern`` as plain text.

        Returns ``{"matches": [{"path", "line", "text"}], "files_searched", "truncated",
        "timed_out"}``. Binary, non-UTF-8 and too-large files are skipped; symlinks are
        not followed.

        Raises:
            PatternError: the pattern is empty, too long, malformed or uses a feature RE2
                lacks; :class:`~llmagentos.exceptions.PatternTooCostly` when it would
                cost too much to run.
        """
        matches_line = compile_line_pattern(pattern, literal=literal)
        if glob is not None and not 0 < len(glob) <= _MAX_GLOB:
            raise PatternError(glob, f"a glob has 1 to {_MAX_GLOB} characters")
        deadline = time.monotonic() + self.search_seconds
        parts = self.resolve(path)
        matches: list[dict[str, Any]] = []
        searched = 0
        truncated = timed_out = False
        fd = self._walk(path, parts[:-1]) if parts else -1
        try:
            single = fd >= 0 and _kind(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode)
        finally:
            if fd >= 0:
                os.close(fd)
        if single == "file":
            files: Iterator[tuple[tuple[str, ...], str, int, int]] = iter([(parts, "file", 0, -1)])
        else:
            files = self._tree(path, parts, recursive=True)
        for child, kind, _, _ in files:
            if kind != "file" or (glob and not fnmatch.fnmatch(child[-1], glob)):
                continue
            if time.monotonic() > deadline:
                timed_out = True
                break
            shown = "/".join(child)
            try:
                text = self._read_text(shown, child)
            except (PathRefused, OSError):
                continue  # binary, too large or gone: not searchable
            searched += 1
            for number, line in enumerate(text.splitlines(), start=1):
                if matches_line(line[:_MAX_LINE]):
                    if len(matches) >= self.max_results:
                        truncated = True
                        break
                    matches.append({"path": shown, "line": number, "text": line[:500]})
                if time.monotonic() > deadline:
                    timed_out = True
                    break
            if truncated or timed_out:
                break
        return {
            "matches": matches,
            "files_searched": searched,
            "truncated": truncated or timed_out,
            "timed_out": timed_out,
        }

    # -- as tools -------------------------------------------------------------------------

    def tools(self, namespace: str = "files") -> list[FunctionTool]:
        """The four operations as tools for a model, in ``namespace``."""
        workspace = self

        def read_file(path: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
            """Read a text file of the workspace (optionally only some lines).

            Args:
                path: the file, relative to the workspace root.
                offset: the first line to return (0-based).
                limit: how many lines to return (all when omitted).
            """
            return workspace.read_file(path, offset, limit)

        def write_file(path: str, content: str) -> dict[str, Any]:
            """Create or overwrite a text file in the workspace.

            Args:
                path: the file, relative to the workspace root.
                content: the whole new text of the file.
            """
            return workspace.write_file(path, content)

        def list_dir(path: str = ".", recursive: bool = False) -> dict[str, Any]:
            """List the files and folders of a workspace folder.

            Args:
                path: the folder, relative to the workspace root.
                recursive: list the whole tree below it.
            """
            return workspace.list_dir(path, recursive)

        def search(
            pattern: str, path: str = ".", glob: str | None = None, literal: bool = False
        ) -> dict[str, Any]:
            """Search the workspace's text files for lines matching a pattern.

            Args:
                pattern: a regular expression in RE2 syntax (no backreferences or
                    lookarounds), or plain text with literal=true.
                path: the folder or file to search.
                glob: only files whose name matches, like "*.py".
                literal: treat the pattern as plain text.
            """
            return workspace.search(pattern, path, glob, literal)

        return [
            tool(namespace=namespace)(function)
            for function in (read_file, write_file, list_dir, search)
        ]

    def registry(self, namespace: str = "files") -> ToolRegistry:
        """A tool registry holding :meth:`tools`."""
        return ToolRegistry(self.tools(namespace))
