"""What a call is, as one SHA-256 digest: approvals and recorded effects are bound to it.

A durable run finds its recorded results and approvals by position (the idempotency
key); the digest says *what* was recorded or approved there, so a resumed run whose
call at that position differs is caught instead of being handed the old result or
the old approval.

The digest is SHA-256 over canonical JSON: sorted keys, no whitespace, strings as
JSON escapes them (control characters escaped, the rest as UTF-8), and one form per
number: an integral float is written as the exact integer (``5.0`` and ``5`` are the
same argument), any other float in Python's shortest round-trip form, ``NaN`` and
``Infinity`` as bare tokens (never confused with the strings ``"NaN"``).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from llmagentos._json import jsonable

__all__ = ["call_digest", "canonical_json", "model_digest", "value_digest"]


def _normal(value: Any) -> Any:
    """``value`` with every number in its one canonical form (bools stay bools)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, dict):
        return {str(key): _normal(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(item) for item in value]
    return _normal(jsonable(value))


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON text (see the module docstring)."""
    return json.dumps(
        _normal(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    )


def _sha256(kind: str, body: dict[str, Any]) -> str:
    # The kind is part of the hashed text: a tool call and a model call never share one.
    text = canonical_json({"kind": kind, **body})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def call_digest(tool: str, arguments: Any) -> str:
    """The digest of a call to ``tool`` (its qualified name) with ``arguments``."""
    return _sha256("tool", {"tool": tool, "arguments": arguments})


def model_digest(model: str, request: Any) -> str:
    """The digest of a request (its JSON data) to the model ``model``."""
    return _sha256("model", {"model": model, "request": request})


def value_digest(value: Any) -> str:
    """The digest of any JSON-able value (a run's fingerprint, say)."""
    return _sha256("value", {"value": value})
