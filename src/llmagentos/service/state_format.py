"""The JSON-difference format of stored session states: its values, and reading them.

:mod:`llmagentos.service.state` writes a difference (and chooses between JSON and
pickle); the helpers here are what writing and reading share, and :class:`Decoder`
applies a difference to a freshly built agent. Reading builds only the classes
``allowed`` names, never calling their code, and refuses anything else with
``ValueError`` (the codec turns it into
:class:`~llmagentos.exceptions.SessionStateRefused`).
"""

from __future__ import annotations

import array
import base64
import collections
import contextlib
import random
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = [
    "PRIMITIVE",
    "SAME",
    "Decoder",
    "attribute_state",
    "attributes",
    "b64",
    "buildable",
    "is_nan",
    "numpy_module",
    "plain",
    "type_name",
    "unb64",
]

PRIMITIVE = frozenset({type(None), bool, int, float, str})
SAME: Any = None  # a delta of None: nothing changed


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)


def is_nan(value: Any) -> bool:
    return type(value) is float and value != value  # noqa: PLR0124 - only NaN is unequal


def type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def plain(value: Any) -> bool:
    """Only primitives, lists, tuples and dicts all the way down."""
    kind = type(value)
    if kind in PRIMITIVE:
        return True
    if kind is list or kind is tuple:
        return all(plain(item) for item in value)
    if kind is dict:
        return all(plain(k) and plain(v) for k, v in value.items())
    return False


_OBJECT_REDUCE: tuple[Any, Any] = (object.__reduce_ex__, object.__reduce__)
_OBJECT_NEW: Any = object.__new__


def attribute_state(cls: type) -> bool:
    """Is an instance's whole state its attributes (pickled by them, as a dict)?"""
    reducers: tuple[Any, Any] = (cls.__reduce_ex__, cls.__reduce__)
    if reducers[0] is not _OBJECT_REDUCE[0] or reducers[1] is not _OBJECT_REDUCE[1]:
        return False
    getstate = getattr(cls, "__getstate__", object.__getstate__)
    return getstate is object.__getstate__ or getattr(getstate, "__module__", "") == "dataclasses"


def buildable(cls: type) -> bool:
    """... and can an instance be made without running any of its code?"""
    new: Any = cls.__new__
    if new is not _OBJECT_NEW or not attribute_state(cls):
        return False
    setstate = getattr(cls, "__setstate__", None)
    # Frozen slotted dataclasses get dataclasses' own, attribute-based one.
    return setstate is None or getattr(setstate, "__module__", "") == "dataclasses"


def attributes(obj: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for cls in type(obj).__mro__:
        for slot in cls.__dict__.get("__slots__", ()):
            if slot in ("__dict__", "__weakref__") or slot in found:
                continue
            with contextlib.suppress(AttributeError):  # an unset slot
                found[slot] = object.__getattribute__(obj, slot)
    found.update(getattr(obj, "__dict__", {}))
    return found


def numpy_module() -> Any:
    return sys.modules.get("numpy")


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class Decoder:
    """Applies a delta to a freshly built agent, building only allowed classes."""

    def __init__(self, allowed: Callable[[str], type | None], root: Any) -> None:
        self.allowed = allowed
        self.root = root
        self.numbered: dict[int, Any] = {}

    def apply(self, current: Any, delta: Any) -> Any:
        if delta is SAME:
            return current
        if not isinstance(delta, dict):
            raise ValueError("a delta must be an object")
        if "=" in delta:
            return self.full(delta["="])
        if "o" in delta:
            for attr, inner in delta["o"].items():
                if not isinstance(attr, str):
                    raise ValueError("attribute names are strings")
                if attr == "__self__" and isinstance(current, types.MethodType):
                    self.apply(current.__self__, inner)
                    continue
                old = getattr(current, attr, None)
                new = self.apply(old, inner)
                if new is not old or not hasattr(current, attr):
                    object.__setattr__(current, attr, new)
            for attr in delta.get("x", []):
                object.__delattr__(current, attr)
            return current
        if "d" in delta:
            keys = list(current)
            for index, inner in delta["d"]:
                key = keys[index]
                current[key] = self.apply(current[key], inner)
            return current
        if "l" in delta:
            items = list(current)
            for index, inner in delta["l"]:
                items[index] = self.apply(items[index], inner)
            if type(current) is tuple:
                return tuple(items)
            current[:] = items
            return current
        if "random" in delta:
            current.setstate(_random_tuple(delta["random"]))
            return current
        if "nd" in delta:
            np = numpy_module()
            data = np.frombuffer(unb64(delta["nd"]), dtype=current.dtype)
            current[...] = data.reshape(current.shape)
            return current
        raise ValueError(f"unknown delta {sorted(delta)}")

    def _resolve(self, path: list[Any]) -> Any:
        node = self.root
        for kind, step in path:
            if kind == "a":
                node = getattr(node, step)
            elif kind == "i":
                node = node[step]
            elif kind == "k":
                node = node[list(node)[step]]
            else:
                raise ValueError(f"unknown path step {kind!r}")
        return node

    def _number(self, node: dict[str, Any], value: Any) -> Any:
        self.numbered[int(node["#"])] = value
        return value

    def full(self, node: Any) -> Any:
        if type(node) in PRIMITIVE:
            return node
        if type(node) is list:  # a bare array: a list of primitives
            if not set(map(type, node)) <= PRIMITIVE:
                raise ValueError("a bare array holds primitives only")
            return node
        if not isinstance(node, dict):
            raise ValueError("a value must be a primitive or an object")
        kind = node.get("$")
        if kind == "ref":
            return self._resolve(node["p"]) if "p" in node else self.numbered[int(node["n"])]
        if kind == "tuple":
            return tuple(self.full(item) for item in node["v"])
        if kind == "bytes":
            return unb64(node["v"])
        if kind == "list":
            made: list[Any] = self._number(node, [])
            made.extend(self.full(item) for item in node["v"])
            return made
        if kind == "rows":
            return self._number(node, _unpack_rows(node))
        if kind in ("dict", "odict"):
            table: dict[Any, Any] = self._number(
                node, {} if kind == "dict" else collections.OrderedDict()
            )
            for key, value in node["v"]:
                table[self.full(key)] = self.full(value)
            return table
        if kind in ("set", "frozenset"):
            items = [item for item in node["v"] if type(item) in PRIMITIVE]
            return self._number(node, set(items) if kind == "set" else frozenset(items))
        if kind == "random":
            generator = random.Random()
            generator.setstate(_random_tuple(node["v"]))
            return self._number(node, generator)
        if kind == "method":
            number = int(node["#"])
            owner = self.full(node["s"])
            method = getattr(owner, str(node["f"]))
            if not isinstance(method, types.MethodType) or method.__self__ is not owner:
                raise ValueError(f"{node['f']!r} is not a method of its object")
            self.numbered[number] = method
            return method
        if kind in ("nd", "gen", "np", "dtype"):
            return self._number(node, self._numpy_value(kind, node))
        if kind == "obj":
            cls = self.allowed(str(node["c"]))
            if cls is None:
                raise ValueError(f"class {node['c']!r} is not part of this service's agent")
            obj = self._number(node, object.__new__(cls))
            for attr, value in node["a"].items():
                object.__setattr__(obj, str(attr), self.full(value))
            return obj
        raise ValueError(f"unknown value kind {kind!r}")

    def _numpy_value(self, kind: str, node: dict[str, Any]) -> Any:
        np = numpy_module()
        if np is None:
            import numpy as np
        if kind == "dtype":
            return np.dtype(str(node["t"]))
        if kind == "np":
            return np.frombuffer(unb64(node["v"]), dtype=np.dtype(str(node["t"])))[0]
        if kind == "nd":
            dtype = np.dtype(str(node["t"]))
            if dtype.hasobject:
                raise ValueError("object arrays are not stored")
            flat = np.frombuffer(unb64(node["v"]), dtype=dtype)
            return flat.reshape([int(n) for n in node["s"]]).copy()
        spec = node["v"]
        name = str(spec["bits"])
        if name not in _BIT_GENERATORS:
            raise ValueError(f"unknown bit generator {name!r}")
        seeds = spec.get("seed")
        sequence = None
        if seeds is not None:
            sequence = np.random.SeedSequence(
                seeds["entropy"],
                spawn_key=tuple(seeds["spawn_key"]),
                pool_size=int(seeds["pool_size"]),
                n_children_spawned=int(seeds["children"]),
            )
        bits = getattr(np.random, name)(sequence)
        bits.state = spec["state"]
        return np.random.Generator(bits)


def _unpack_rows(node: dict[str, Any]) -> list[list[Any]]:
    code = str(node["t"])
    if code not in ("d", "q"):
        raise ValueError(f"unknown row type {code!r}")
    packed = array.array(code)
    packed.frombytes(unb64(node["v"]))
    if sys.byteorder != "little":
        packed.byteswap()
    lengths = [int(n) for n in node["n"]]
    if any(n < 0 for n in lengths) or sum(lengths) != len(packed):
        raise ValueError("the rows' lengths do not match their data")
    values, rows, start = packed.tolist(), [], 0
    for length in lengths:
        rows.append(values[start : start + length])
        start += length
    return rows


def _random_tuple(state: Any) -> tuple[Any, ...]:
    version, internal, gauss = state
    return (int(version), tuple(int(n) for n in internal), gauss)
