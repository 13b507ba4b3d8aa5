"""Checks on what callers write: every bad value is refused before anything is stored."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from llmagentos.exceptions import MemoryInputError
from llmagentos.memory.types import NewMemory

__all__ = [
    "MAX_KEY_CHARS",
    "MAX_METADATA_BYTES",
    "MAX_TEXT_CHARS",
    "check_k",
    "check_text",
    "new_memories",
]

MAX_TEXT_CHARS = 1_000_000
MAX_KEY_CHARS = 512
MAX_METADATA_BYTES = 64_000
MAX_BATCH = 10_000
MAX_K = 1_000


def check_text(where: str, text: object) -> str:
    if not isinstance(text, str):
        raise MemoryInputError(where, f"must be a string (got {type(text).__name__})")
    if not text.strip():
        raise MemoryInputError(where, "must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise MemoryInputError(where, f"is {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    if "\x00" in text:
        raise MemoryInputError(where, "must not contain NUL characters")
    return text


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise MemoryInputError("k", f"must be an integer from 1 to {MAX_K} (got {k!r})")
    return k


def _check_json(where: str, value: Any, depth: int = 0) -> None:
    if depth > 8:
        raise MemoryInputError(where, "nests too deeply (more than 8 levels)")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if "\x00" in value:  # Postgres (text and jsonb) cannot hold NUL: refused for every store
            raise MemoryInputError(where, "must not contain NUL characters")
        return
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise MemoryInputError(where, f"must be a finite number (got {value!r})")
        return
    if isinstance(value, list | tuple):
        for i, part in enumerate(value):
            _check_json(f"{where}[{i}]", part, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, part in value.items():
            if not isinstance(key, str) or "\x00" in key:
                raise MemoryInputError(where, f"keys must be strings without NUL (got {key!r})")
            _check_json(f"{where}.{key}", part, depth + 1)
        return
    raise MemoryInputError(where, f"must be JSON data (got {type(value).__name__})")


def check_metadata(where: str, metadata: object) -> dict[str, Any]:
    if not isinstance(metadata, Mapping):
        raise MemoryInputError(where, f"must be a mapping (got {type(metadata).__name__})")
    _check_json(where, metadata)
    size = len(json.dumps(metadata))
    if size > MAX_METADATA_BYTES:
        raise MemoryInputError(where, f"is {size} bytes of JSON; the limit is {MAX_METADATA_BYTES}")
    return dict(metadata)


def check_ttl(where: str, ttl: object) -> float | None:
    if ttl is None:
        return None
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not (ttl > 0 and math.isfinite(ttl))
    ):
        raise MemoryInputError(where, f"must be a positive number of seconds (got {ttl!r})")
    return float(ttl)


def new_memories(items: object) -> list[NewMemory]:
    """``items`` (texts, :class:`NewMemory` or mappings of its fields) checked and as
    :class:`NewMemory`."""
    if isinstance(items, str | NewMemory | Mapping):
        items = [items]
    if not isinstance(items, Sequence):
        raise MemoryInputError(
            "items", f"must be a list of texts or items (got {type(items).__name__})"
        )
    if not items:
        raise MemoryInputError("items", "must not be empty")
    if len(items) > MAX_BATCH:
        raise MemoryInputError(
            "items", f"holds {len(items)} items; one write takes at most {MAX_BATCH}"
        )
    out: list[NewMemory] = []
    keys: set[str] = set()
    for i, raw in enumerate(items):
        where = f"items[{i}]"
        if isinstance(raw, str):
            item = NewMemory(raw)
        elif isinstance(raw, NewMemory):
            item = NewMemory(raw.text, raw.metadata, raw.key, raw.ttl, raw.embedding)
        elif isinstance(raw, Mapping):
            unknown = set(raw) - {"text", "metadata", "key", "ttl", "embedding"}
            if unknown:
                raise MemoryInputError(f"{where}.{sorted(unknown)[0]}", "is not a field of an item")
            if "text" not in raw:
                raise MemoryInputError(f"{where}.text", "is required")
            item = NewMemory(
                raw["text"],
                raw.get("metadata") or {},
                raw.get("key"),
                raw.get("ttl"),
                raw.get("embedding"),
            )
        else:
            raise MemoryInputError(where, f"must be a text or an item (got {type(raw).__name__})")
        check_text(f"{where}.text", item.text)
        item.metadata = check_metadata(f"{where}.metadata", item.metadata)
        if item.key is not None:
            if not isinstance(item.key, str) or not item.key or len(item.key) > MAX_KEY_CHARS:
                raise MemoryInputError(
                    f"{where}.key",
                    f"must be a string of 1 to {MAX_KEY_CHARS} characters (got {item.key!r})",
                )
            if "\x00" in item.key:
                raise MemoryInputError(f"{where}.key", "must not contain NUL characters")
            if item.key in keys:
                raise MemoryInputError(f"{where}.key", f"{item.key!r} appears twice in one write")
            keys.add(item.key)
        item.ttl = check_ttl(f"{where}.ttl", item.ttl)
        if item.embedding is not None:
            vector = item.embedding
            if (
                not isinstance(vector, Sequence)
                or not vector
                or not all(
                    isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                    for x in vector
                )
            ):
                raise MemoryInputError(
                    f"{where}.embedding", "must be a non-empty list of finite numbers"
                )
        out.append(item)
    return out
