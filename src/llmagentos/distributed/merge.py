"""What several workers learned from one starting point, merged into one agent.

Training one agent on ``W`` workers gives each a copy of it; each copy learns from its
own episodes. Between rounds their learning is merged (and sent back to every worker):

* **Q-tables**: each entry is the visit-weighted mean of the copies' values, where a
  copy's weight is the visits it *added* in the round (an entry no copy visited keeps
  its value); visits add up. With one worker this is the copy's table exactly.
* **schedule counters** (``steps``, ``episodes`` of selectors and optimizers): what
  each copy added, summed, so epsilon decays with the episodes run on all workers.

This is parameter averaging, not the serial run: a serial learner sees episode *k*
after learning from episodes *0..k-1*, a worker only from its own and from what the
last merge brought. Results are the same for the same seeds and worker count.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from typing import Any

from llmagentos.rl.qtable import QTable

__all__ = ["LearnedState", "find_q_tables", "learned_state", "load_learned", "merge_learned"]

LearnedState = dict[str, Any]
"""``{"tables": [QTable, ...], "counters": {module kind: state_dict}}``: copies, not the
agent's own objects."""

_COUNTED = ("perception", "planning", "learning")


def find_q_tables(agent: Any) -> list[QTable]:
    """The agent's Q-tables, each once, in a fixed order (modules, then components)."""
    found: dict[int, QTable] = {}

    def visit(value: Any) -> None:
        if isinstance(value, QTable):
            found.setdefault(id(value), value)

    for module in _modules(agent):
        for value in vars(module).values():
            visit(value)
        for component in module.components():
            for value in vars(component).values():
                visit(value)
    return list(found.values())


def _modules(agent: Any) -> Sequence[Any]:
    return (agent.perception_module, agent.planning_module, agent.learning_module)


def learned_state(agent: Any) -> LearnedState:
    """What training changes in ``agent``: its Q-tables and its modules' counters."""
    counters = {
        kind: module.state_dict() for kind, module in zip(_COUNTED, _modules(agent), strict=True)
    }
    return {"tables": [copy.deepcopy(t) for t in find_q_tables(agent)], "counters": counters}


def load_learned(agent: Any, state: LearnedState) -> None:
    """Put ``state`` into ``agent`` in place: its Q-table objects keep their identity."""
    tables = find_q_tables(agent)
    if len(tables) != len(state["tables"]):
        raise ValueError(f"{len(state['tables'])} Q-tables to load into {len(tables)}")
    for table, source in zip(tables, state["tables"], strict=True):
        _assign(table, copy.deepcopy(source))
    for kind, module in zip(_COUNTED, _modules(agent), strict=True):
        module.load_state_dict(state["counters"].get(kind, {}))


def _assign(target: QTable, source: QTable) -> None:
    target.rows = source.rows
    target.visits = source.visits
    target._index = source._index
    target.meta = source.meta | target.meta


def merge_learned(base: LearnedState, copies: Sequence[LearnedState]) -> LearnedState:
    """Merge ``copies`` (each learned from ``base``) into one state (module docstring)."""
    if not copies:
        return base
    tables = [
        _merge_table(table, [c["tables"][i] for c in copies])
        for i, table in enumerate(base["tables"])
    ]
    counters = {
        kind: _merge_counts(
            base["counters"].get(kind, {}), [c["counters"].get(kind, {}) for c in copies]
        )
        for kind in _COUNTED
    }
    return {"tables": tables, "counters": counters}


def _merge_table(base: QTable, copies: Sequence[QTable]) -> QTable:
    merged = QTable(base.n_actions, base.n_states, initial=base.initial)
    merged.meta = dict(base.meta)
    states = list(base.states())
    known = set(states)
    for other in copies:  # rows the copies added, in the order they first appear
        for state in other.states():
            if state not in known:
                known.add(state)
                states.append(state)
    for state in states:
        before_values, before_visits = _row(base, state)
        values = list(before_values)
        visits = list(before_visits)
        rows = [_row(other, state) for other in copies]
        for action in range(base.n_actions):
            weighted = [
                (copy_visits[action] - before_visits[action], copy_values[action])
                for copy_values, copy_visits in rows
                if copy_visits[action] > before_visits[action]
            ]
            if not weighted:
                continue
            total = sum(weight for weight, _ in weighted)
            # One contributor: its value as it is (w * v / w is not always v in floats).
            values[action] = (
                weighted[0][1]
                if len(weighted) == 1
                else math.fsum(w * v for w, v in weighted) / total
            )
            visits[action] = before_visits[action] + total
        _set_row(merged, state, values, visits)
    return merged


def _row(table: QTable, state: Any) -> tuple[list[float], list[int]]:
    row = table.row_of(state)
    if row is None:
        return [table.initial] * table.n_actions, [0] * table.n_actions
    return table.rows[row], table.visits[row]


def _set_row(table: QTable, state: Any, values: Iterable[float], visits: Iterable[int]) -> None:
    for action, value in enumerate(values):
        table[state, action] = value
    row = table.row_of(state)
    assert row is not None
    table.visits[row] = list(visits)


def _merge_counts(base: Any, copies: Sequence[Any]) -> Any:
    """Numbers: the base plus what each copy added; dicts: key by key; the rest: the base."""
    if isinstance(base, dict):
        return {
            key: _merge_counts(
                value, [c.get(key, value) if isinstance(c, dict) else value for c in copies]
            )
            for key, value in base.items()
        }
    if isinstance(base, bool) or not isinstance(base, int | float):
        return base
    return base + sum(other - base for other in copies if isinstance(other, int | float))


def _get(value: Any, key: str, default: Any) -> Any:
    return value.get(key, default) if isinstance(value, dict) else default
