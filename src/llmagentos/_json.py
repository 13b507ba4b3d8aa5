"""Turn module inputs and outputs into JSON-able data without importing numpy or pydantic."""

from __future__ import annotations

import base64
import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["jsonable"]

_PRIMITIVES = (str, int, bool, type(None))


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON data (dict, list, str, int, float, bool, None).

    NumPy scalars and arrays become Python numbers and lists, tuples become lists,
    dataclasses and pydantic models become dicts, bytes (and bytearrays, memoryviews)
    their base64 text. Non-finite floats become strings (``"nan"``, ``"inf"``) so the
    result is strict JSON.

    Raises:
        TypeError: the value has no JSON form; the message names its type.
    """
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return jsonable(dump(mode="json"))
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return jsonable(tolist())
    raise TypeError(f"value of type {type(value).__name__} is not JSON-serializable: {value!r:.80}")
