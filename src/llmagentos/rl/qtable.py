"""A tabular action-value function Q(s, a), saved and loaded as inspectable JSON."""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

from llmagentos._files import write_atomic
from llmagentos._json import jsonable
from llmagentos.exceptions import QTableError

__all__ = ["FORMAT", "QTable"]

FORMAT = "llmagentos.qtable"
_VERSION = 1


def _hashable(key: Any) -> Hashable:
    """JSON turns tuples into lists; turn them back so loaded states are dict keys again."""
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in key.items()))
    return key  # type: ignore[no-any-return]


class QTable:
    """Q-values for discrete states and actions, plus visit counts.

    With ``n_states`` given, states are the integers ``0 .. n_states - 1`` (a dense
    table). Without it, any hashable state is accepted and rows are added on first
    update (e.g. text observations). Rows are Python lists: for the few actions of a
    tabular task, reading and updating single entries is faster than with NumPy.
    :meth:`as_array` gives a NumPy view for analysis.

    Args:
        n_actions: number of discrete actions.
        n_states: number of states for a dense table, or ``None`` for a growing one.
        initial: the value of every entry before it is learned.
    """

    def __init__(self, n_actions: int, n_states: int | None = None, *, initial: float = 0.0):
        if n_actions < 1:
            raise QTableError(f"n_actions must be at least 1 (got {n_actions})")
        if n_states is not None and n_states < 1:
            raise QTableError(f"n_states must be at least 1 (got {n_states})")
        self.n_actions = n_actions
        self.n_states = n_states
        self.initial = float(initial)
        self.meta: dict[str, Any] = {}
        self._index: dict[Hashable, int] | None = None if n_states is not None else {}
        rows = n_states or 0
        self.rows: list[list[float]] = [[self.initial] * n_actions for _ in range(rows)]
        self.visits: list[list[int]] = [[0] * n_actions for _ in range(rows)]
        self._blank = [self.initial] * n_actions

    # -- lookup ---------------------------------------------------------------------------

    def _dense_row(self, state: Any) -> int:
        try:
            index = int(state)
        except (TypeError, ValueError) as err:
            raise QTableError(f"state {state!r} is not an integer state index") from err
        if index != state or not 0 <= index < len(self.rows):
            raise QTableError(f"state {state!r} is outside 0..{len(self.rows) - 1}")
        return index

    def row_of(self, state: Any) -> int | None:
        """The row index of ``state``, or ``None`` for a state a growing table has not seen."""
        index = self._index
        if index is None:
            if type(state) is int and 0 <= state < len(self.rows):
                return state
            return self._dense_row(state)
        try:
            return index.get(state)
        except TypeError as err:
            raise QTableError(
                f"state {state!r:.60} is not hashable: use a feature extractor that returns "
                "numbers, strings or tuples"
            ) from err

    def _ensure_row(self, state: Any) -> int:
        row = self.row_of(state)
        if row is None:
            assert self._index is not None  # row_of returns None only for growing tables
            row = self._index[state] = len(self.rows)
            self.rows.append([self.initial] * self.n_actions)
            self.visits.append([0] * self.n_actions)
        return row

    def values(self, state: Any) -> list[float]:
        """The Q-values of every action in ``state`` (do not mutate the list)."""
        rows = self.rows
        if type(state) is int and self._index is None and 0 <= state < len(rows):
            return rows[state]  # the hot path of dense tables
        row = self.row_of(state)
        return self._blank if row is None else rows[row]

    def max_value(self, state: Any) -> float:
        return max(self.values(state))

    def __getitem__(self, key: tuple[Any, int]) -> float:
        state, action = key
        return self.values(state)[action]

    def __setitem__(self, key: tuple[Any, int], value: float) -> None:
        state, action = key
        self.rows[self._ensure_row(state)][action] = float(value)

    def __len__(self) -> int:
        return len(self.rows)

    def states(self) -> Iterator[Hashable]:
        """Every state with a row, in row order."""
        if self._index is None:
            return iter(range(len(self.rows)))
        return iter(self._index)

    # -- learning -------------------------------------------------------------------------

    def action_index(self, action: Any) -> int:
        """``action`` as a column of the table.

        Raises:
            QTableError: it is not an integer in ``0..n_actions - 1`` (a bool, a negative
                index, which a list would take from the end, or past the last action).
        """
        if type(action) is int and 0 <= action < self.n_actions:
            return action
        if isinstance(action, bool) or not hasattr(type(action), "__index__"):
            raise QTableError(f"action {action!r:.40} is not an integer action index")
        index = operator.index(action)
        if not 0 <= index < self.n_actions:
            raise QTableError(f"action {index} is outside 0..{self.n_actions - 1}")
        return index

    def update(self, state: Any, action: int, target: float, alpha: float) -> tuple[float, float]:
        """Move Q(state, action) toward ``target`` by ``alpha``; return (old, new).

        Raises:
            QTableError: the state or action is not one of the table's, or ``target``
                is not a finite number (it would poison the value for good).
        """
        if type(action) is not int or not 0 <= action < self.n_actions:
            action = self.action_index(action)
        if not target - target == 0.0:  # NaN or an infinity (finite numbers give 0.0)
            raise QTableError(f"the target {target!r} is not a finite number")
        row = self._ensure_row(state)
        values = self.rows[row]
        old = values[action]
        new = old + alpha * (target - old)
        values[action] = new
        self.visits[row][action] += 1
        return old, new

    # -- analysis and persistence ---------------------------------------------------------

    def as_array(self) -> Any:
        """The table as a NumPy array of shape ``(len(self), n_actions)``."""
        import numpy as np

        return np.array(self.rows, dtype=float).reshape(len(self.rows), self.n_actions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": _VERSION,
            "n_actions": self.n_actions,
            "n_states": self.n_states,
            "initial": self.initial,
            "states": None if self._index is None else [jsonable(s) for s in self._index],
            "values": self.rows,
            "visits": self.visits,
            "meta": jsonable(self.meta),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as JSON, atomically (a crash never leaves half a file)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), separators=(",", ":"))
        return write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "Q-table") -> QTable:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise QTableError(f"{source}: not an llmagentos Q-table (format must be {FORMAT!r})")
        if data.get("version") != _VERSION:
            raise QTableError(f"{source}: unsupported version {data.get('version')!r}")
        try:
            table = cls(int(data["n_actions"]), data["n_states"], initial=float(data["initial"]))
            rows = [[float(v) for v in row] for row in data["values"]]
            visits = [[int(v) for v in row] for row in data.get("visits") or []]
            states = data.get("states")
        except (KeyError, TypeError, ValueError) as err:
            raise QTableError(f"{source}: malformed Q-table ({err})") from err
        if any(len(row) != table.n_actions for row in rows):
            raise QTableError(f"{source}: every row must have {table.n_actions} values")
        if table.n_states is not None and len(rows) != table.n_states:
            raise QTableError(f"{source}: expected {table.n_states} rows, found {len(rows)}")
        if states is not None:
            if len(states) != len(rows):
                raise QTableError(f"{source}: {len(states)} states for {len(rows)} rows")
            table._index = {_hashable(s): i for i, s in enumerate(states)}
        table.rows = rows
        table.visits = visits if len(visits) == len(rows) else [[0] * table.n_actions for _ in rows]
        table.meta = dict(data.get("meta") or {})
        return table

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QTable:
        """Read a table written by :meth:`save`."""
        source = str(path)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise QTableError(f"{source}: no such file") from err
        except (OSError, json.JSONDecodeError) as err:
            raise QTableError(f"{source}: cannot read Q-table ({err})") from err
        return cls.from_dict(data, source=source)

    def check_fits(self, *, n_actions: int, n_states: int | None) -> None:
        """Raise :class:`QTableError` unless the table fits an environment of this size."""
        if self.n_actions != n_actions or self.n_states != n_states:
            raise QTableError(
                f"Q-table has {self.n_states} states x {self.n_actions} actions, but the "
                f"environment has {n_states} states x {n_actions} actions"
            )

    def __repr__(self) -> str:
        return f"QTable(n_states={len(self.rows)}, n_actions={self.n_actions})"
