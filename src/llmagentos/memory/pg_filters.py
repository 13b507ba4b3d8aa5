"""Metadata filters as Postgres ``jsonb`` SQL, with exactly :func:`~.filters.matches` semantics.

jsonb equality is already type-strict (``1`` = ``1.0``, but never ``"1"`` or ``true``),
so ``$eq``/``$in`` compare jsonb values directly. Order comparisons first check the
stored JSON type, then compare numbers as jsonb (exact decimals) and strings as text
under ``COLLATE "C"``: byte order of UTF-8 is code-point order, Python's, whatever the
database's default collation is. ``$ne``/``$nin`` also require the field to be present,
so a condition on a missing field is false.

Numbers compare as the decimals ``json.dumps`` wrote; an integer beyond 2**53 against a
float can order differently than Python would (Python compares the float's exact binary
value, Postgres its shortest decimal).
"""

from __future__ import annotations

import json
from typing import Any

from llmagentos.memory.filters import Condition, Filter, Junction, Scalar

__all__ = ["postgres_where"]

_SQL_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _condition(column: str, cond: Condition, params: list[Any]) -> str:
    # The field name is checked against filters._FIELD (letters, digits, _): safe to inline.
    value_of = f"({column} -> '{cond.field}')"
    present = f"({column} ? '{cond.field}')"
    if cond.op in ("$in", "$nin"):
        values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
        params.append([json.dumps(v) for v in values])
        any_of = f"({value_of} = ANY(%s::jsonb[]))"
        return any_of if cond.op == "$in" else f"({present} AND NOT {any_of})"
    value: Scalar = cond.value  # type: ignore[assignment]
    if cond.op in ("$eq", "$ne"):
        params.append(json.dumps(value))
        same = f"({value_of} = %s::jsonb)"
        return same if cond.op == "$eq" else f"({present} AND NOT {same})"
    op = _SQL_OPS[cond.op]
    if isinstance(value, str):
        params.append(value)
        return (
            f"(jsonb_typeof({value_of}) = 'string' AND "
            f'({column} ->> \'{cond.field}\') COLLATE "C" {op} (%s::text) COLLATE "C")'
        )
    params.append(json.dumps(value))
    return f"(jsonb_typeof({value_of}) = 'number' AND {value_of} {op} %s::jsonb)"


def postgres_where(tree: Filter, params: list[Any], column: str = "metadata") -> str:
    """The filter as a Postgres boolean expression over the jsonb ``column``; appends the
    bound values (``%s`` placeholders) to ``params``."""
    if isinstance(tree, Junction):
        joiner = " AND " if tree.op == "$and" else " OR "
        return "(" + joiner.join(postgres_where(part, params, column) for part in tree.parts) + ")"
    return _condition(column, tree, params)
