"""Metadata filters: a small, typed query language every backend renders the same way.

A filter is a mapping, as in MongoDB or Chroma::

    {"source": "docs"}                                   # equality
    {"year": {"$gte": 2020, "$lt": 2024}}                # comparisons (numbers or strings)
    {"lang": {"$in": ["en", "fr"]}, "draft": {"$ne": True}}
    {"$or": [{"kind": "lesson"}, {"score": {"$gt": 0.5}}]}

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin``, and ``$and``/``$or`` over lists. Keys
at one level are joined with AND. Values are strings, numbers or booleans; a value only
matches a stored value of the same JSON type (``1`` never matches ``"1"`` or ``true``).
A condition on a field the item does not have is false, ``$ne`` and ``$nin`` included,
so "not X" never silently selects items that say nothing about X.

:func:`parse_filter` checks a filter once and returns its tree; backends render the tree
(:func:`sqlite_where` here; the Postgres backend has its own) and :func:`matches`
evaluates it in Python, which the conformance tests hold every backend to.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from llmagentos.exceptions import MemoryInputError

__all__ = ["Condition", "Filter", "Junction", "matches", "parse_filter", "sqlite_where"]

Scalar = str | int | float | bool
Op = Literal["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"]
_OPS: frozenset[str] = frozenset(("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"))
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MAX_NODES = 256  # a filter is a query, not a program


@dataclass(frozen=True, slots=True)
class Condition:
    """``field op value``; for ``$in``/``$nin`` the value is a tuple."""

    field: str
    op: Op
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Junction:
    """All (``$and``) or any (``$or``) of the parts."""

    op: Literal["$and", "$or"]
    parts: tuple[Filter, ...]


Filter = Condition | Junction


def _scalar(where: str, value: object) -> Scalar:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise MemoryInputError(where, f"must be a finite number (got {value!r})")
        return value
    raise MemoryInputError(where, f"must be a string, number or boolean (got {value!r})")


class _Parser:
    def __init__(self) -> None:
        self.nodes = 0

    def count(self, where: str) -> None:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise MemoryInputError(where, f"a filter may have at most {_MAX_NODES} conditions")

    def mapping(self, where: str, spec: object) -> Filter:
        if not isinstance(spec, Mapping) or not spec:
            raise MemoryInputError(where, f"must be a non-empty mapping (got {spec!r})")
        parts = [self.entry(f"{where}.{key}", key, value) for key, value in spec.items()]
        return parts[0] if len(parts) == 1 else Junction("$and", tuple(parts))

    def entry(self, where: str, key: object, value: object) -> Filter:
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise MemoryInputError(
                    where, f"must be a non-empty list of filters (got {value!r})"
                )
            parts = tuple(self.mapping(f"{where}[{i}]", part) for i, part in enumerate(value))
            return Junction("$and" if key == "$and" else "$or", parts)
        if not isinstance(key, str) or not _FIELD.fullmatch(key):
            raise MemoryInputError(
                where, f"a metadata field is a name of letters, digits and _ (got {key!r})"
            )
        if not isinstance(value, Mapping):
            self.count(where)
            return Condition(key, "$eq", _scalar(where, value))
        if not value:
            raise MemoryInputError(where, "an operator mapping must not be empty")
        conditions: list[Filter] = []
        for op, operand in value.items():
            self.count(where)
            if op not in _OPS:
                raise MemoryInputError(
                    f"{where}.{op}", f"unknown operator; use one of {', '.join(sorted(_OPS))}"
                )
            if op in ("$in", "$nin"):
                if not isinstance(operand, list | tuple) or not operand:
                    raise MemoryInputError(
                        f"{where}.{op}", f"must be a non-empty list (got {operand!r})"
                    )
                values = tuple(_scalar(f"{where}.{op}", v) for v in operand)
                conditions.append(Condition(key, op, values))
            else:
                scalar = _scalar(f"{where}.{op}", operand)
                if op in ("$gt", "$gte", "$lt", "$lte") and isinstance(scalar, bool):
                    raise MemoryInputError(f"{where}.{op}", "booleans are not ordered")
                conditions.append(Condition(key, op, scalar))
        return conditions[0] if len(conditions) == 1 else Junction("$and", tuple(conditions))


def parse_filter(spec: Mapping[str, Any] | None) -> Filter | None:
    """Check ``spec`` and return its tree (``None`` for no filter).

    Raises:
        MemoryInputError: naming the part of the filter at fault (``where.year.$gt``).
    """
    if spec is None:
        return None
    return _Parser().mapping("where", spec)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _compare(op: str, stored: object, value: Scalar) -> bool:
    if _kind(stored) != _kind(value):
        return op == "$ne"
    if op == "$eq":
        return stored == value
    if op == "$ne":
        return stored != value
    s, v = stored, value
    if op == "$gt":
        return s > v  # type: ignore[operator]
    if op == "$gte":
        return s >= v  # type: ignore[operator]
    if op == "$lt":
        return s < v  # type: ignore[operator]
    return s <= v  # type: ignore[operator]


def matches(tree: Filter | None, metadata: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` satisfies the filter (the reference semantics)."""
    if tree is None:
        return True
    if isinstance(tree, Junction):
        if tree.op == "$and":
            return all(matches(part, metadata) for part in tree.parts)
        return any(matches(part, metadata) for part in tree.parts)
    if tree.field not in metadata:
        return False
    stored = metadata[tree.field]
    if tree.op == "$in":
        return any(_compare("$eq", stored, v) for v in tree.value)  # type: ignore[union-attr]
    if tree.op == "$nin":
        return not any(_compare("$eq", stored, v) for v in tree.value)  # type: ignore[union-attr]
    return _compare(tree.op, stored, tree.value)  # type: ignore[arg-type]


# SQLite: json_type() tells the stored JSON type, so a condition holds only on the same type.
_SQLITE_TYPES = {"string": "= 'text'", "number": "IN ('integer', 'real')"}
_SQL_OPS = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _sqlite_condition(column: str, cond: Condition, params: list[Any]) -> str:
    path = f"'$.{cond.field}'"  # the field name is checked against _FIELD: no quoting needed
    present = f"json_type({column}, {path}) IS NOT NULL"

    def one(op: str, value: Scalar) -> str:
        if isinstance(value, bool):
            same = f"json_type({column}, {path}) = '{'true' if value else 'false'}'"
            return same if op == "$eq" else f"({present} AND NOT {same})"
        type_check = f"json_type({column}, {path}) {_SQLITE_TYPES[_kind(value)]}"
        params.append(value)
        if op == "$ne":
            return f"({present} AND NOT ({type_check} AND json_extract({column}, {path}) = ?))"
        return f"({type_check} AND json_extract({column}, {path}) {_SQL_OPS[op]} ?)"

    if cond.op in ("$in", "$nin"):
        values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
        any_of = "(" + " OR ".join(one("$eq", v) for v in values) + ")"
        return any_of if cond.op == "$in" else f"({present} AND NOT {any_of})"
    return one(cond.op, cond.value)  # type: ignore[arg-type]


def sqlite_where(tree: Filter, params: list[Any], column: str = "metadata") -> str:
    """The filter as an SQLite boolean expression over the JSON ``column``; appends the
    bound values to ``params``."""
    if isinstance(tree, Junction):
        joiner = " AND " if tree.op == "$and" else " OR "
        return "(" + joiner.join(sqlite_where(part, params, column) for part in tree.parts) + ")"
    return _sqlite_condition(column, tree, params)
