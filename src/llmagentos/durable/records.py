"""Step records as the steps log stores them: marshal bytes of plain data.

A step's record must leave the process before the next step begins, and encoding it
is most of what that costs: the C JSON encoder spends ~10 us on a Taxi-v4 record
(every float through ``repr``), :mod:`marshal` ~1.5 us (floats as 8 bytes). So the
log holds marshal data, converted first into exactly what the journal's JSON
encoder would have written and ``json.loads`` given back (:func:`plain`): tuples
become lists, dict keys strings as JSON spells them, NumPy values Python numbers,
subclasses their base types. A reader gets the same dicts as from the JSON rows of
``llmagentos.journal/2``; only JSON's types come out (:func:`unpack` checks).
"""

from __future__ import annotations

import marshal
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmagentos._json import jsonable

if TYPE_CHECKING:
    from llmagentos.agent import Agent
    from llmagentos.types import StepRecord

__all__ = [
    "FIELDS", "pack_data", "pack_fields", "pack_record", "pack_step", "plain", "step_fields",
    "unpack",
]  # fmt: skip

_MARSHAL_VERSION = 2  # binary floats, no back-references (faster to write); stable since 2.5
# The record's keys, in the order the JSON rows of journal/2 had them.
FIELDS = (
    "episode", "step", "observation", "features", "action", "reason", "scores", "reward",
    "next_observation", "terminated", "truncated", "info", "learning", "training", "details",
)  # fmt: skip
_SHORT = FIELDS[:-1]  # a record without details (planners that give none)
# The types JSON gives back as they are. A dict, not a frozenset: dict look-ups are the
# interpreter's hottest code, still in the CPU's caches after an env's step.
_EXACT = dict.fromkeys((str, int, float, bool, type(None)))


def _key(key: Any) -> str:
    """A dict key as the JSON encoder writes it (then reads back: always a string)."""
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, float):
        if math.isfinite(key):
            return float.__repr__(key)
        return "NaN" if math.isnan(key) else ("Infinity" if key > 0 else "-Infinity")
    if key is True or key is False or key is None:
        return "true" if key is True else "false" if key is False else "null"
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _dict(value: dict[Any, Any]) -> dict[str, Any]:
    exact = _EXACT
    for k, v in value.items():
        if type(k) is not str or type(v) not in exact:
            return _new_dict(value)
    return value  # plain already (a learner's report): marshalled at once, so no copy


def _new_dict(value: dict[Any, Any]) -> dict[str, Any]:
    exact, by_type, out = _EXACT, _BY_TYPE, {}  # (numpy's types join _BY_TYPE via plain)
    for k, v in value.items():
        cls = type(v)
        if cls in exact:
            out[k if type(k) is str else _key(k)] = v
        elif by_type.get(cls) is _numpy and v.dtype.kind in "iub":  # an env's action mask
            out[k if type(k) is str else _key(k)] = v.tolist()
        else:
            out[k if type(k) is str else _key(k)] = plain(v)
    return out


def _list(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    exact = _EXACT
    if type(value) is list:
        for v in value:
            if type(v) not in exact:
                break
        else:
            return value
    return [v if type(v) in exact else plain(v) for v in value]


def _numpy(value: Any) -> Any:
    """A NumPy array or scalar as :func:`jsonable` converts it, faster where it can."""
    kind = value.dtype.kind
    if kind in "iub":  # integers and booleans: tolist() is what jsonable gives
        return value.tolist()
    if kind == "f" and sys.modules["numpy"].isfinite(value).all():
        return value.tolist()  # jsonable would turn non-finite floats into strings
    return plain(jsonable(value))


# Converters by exact type; NumPy's types join when first seen (numpy is not imported).
_BY_TYPE: dict[type, Callable[[Any], Any]] = {list: _list, tuple: _list, dict: _dict}


def plain(value: Any) -> Any:
    """``value`` as ``json.loads(encoder.encode(value))`` would give it back, where the
    encoder is the journal's (``default=jsonable``), without writing the text.

    Raises:
        TypeError: what the encoder refuses (a value :func:`jsonable` cannot convert,
            a key that is not a str, int, float, bool or None).
    """
    cls = type(value)
    if cls in _EXACT:
        return value
    convert = _BY_TYPE.get(cls)
    if convert is not None:
        return convert(value)
    # The encoder's own order of checks, for subclasses (np.float64 is a float).
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return _dict(value)
    if getattr(value, "dtype", None) is not None and cls.__module__ == "numpy":
        _BY_TYPE[cls] = _numpy
        return _numpy(value)
    return plain(jsonable(value))


def _mode(agent: Agent) -> bool:
    # The step's mode: the current one, unless it changed since the step (as
    # Agent.last_record reads it; these read the Agent's own slots, once per step).
    return agent._mode_before if agent._mode_step is agent._stepped else agent._training


def step_fields(agent: Agent) -> tuple[Any, ...]:
    """The agent's last step as the values of :data:`FIELDS` (``details`` last, maybe
    ``None``): what :attr:`Agent.last_record` holds, without building the record."""
    observation_before, features, action, decision = agent._stepped
    observation, reward = agent._returned
    outcome, report, training = agent._outcome, agent._report, _mode(agent)
    if decision is None:
        reason = scores = details = None
    else:
        reason, scores, details = decision.reason, decision.scores, decision.details
    if outcome is None:
        terminated, truncated, info = False, False, {}
    else:
        terminated, truncated, info = outcome.terminated, outcome.truncated, outcome.info
    return (
        agent.episode, agent.step_index - 1, observation_before, features, action, reason,
        scores, reward, observation, terminated, truncated, info, report, training, details,
    )  # fmt: skip


def pack_step(n: int, segment: str, agent: Agent) -> bytes:
    """The agent's last step as step ``n`` of ``segment``: :func:`pack_fields` of
    :func:`step_fields`, written out for the common record (scalars, flat lists and
    dicts, an env's info with NumPy values), since it runs once per step and on Taxi-v4
    every call it makes is a measurable part of a step. Anything else (a planner's
    details, nested data, odd keys) goes the general way.
    """
    exact = _EXACT
    o, f, a, decision = agent._stepped
    o2, rw = agent._returned
    outcome, le, tn, step = agent._outcome, agent._report, _mode(agent), agent.step_index - 1
    if decision is None:
        why = sc = de = None
    else:
        why, sc, de = decision.reason, decision.scores, decision.details
    info: Any
    if outcome is None:
        te, tr, info = False, False, {}
    else:
        te, tr, info = outcome.terminated, outcome.truncated, outcome.info
    ep = agent.episode
    if de is not None or not (
        type(ep) is int and type(step) is int and type(o) in exact and type(f) in exact
        and type(a) in exact and type(why) in exact and type(rw) in exact
        and type(o2) in exact and type(te) in exact and type(tr) in exact
        and type(tn) in exact and type(info) is dict
    ):  # fmt: skip
        return pack_fields(n, segment, step_fields(agent))
    try:
        if type(sc) is list:
            for v in sc:
                if type(v) not in exact:
                    sc = _list(sc)
                    break
        elif sc is not None:
            sc = plain(sc)
        for k, v in info.items():
            if type(k) is not str or type(v) not in exact:
                info = _new_dict(info)
                break
        if type(le) is dict:
            for k, v in le.items():
                if type(k) is not str or type(v) not in exact:
                    le = _new_dict(le)
                    break
        elif le is not None:
            le = plain(le)
    except (TypeError, RecursionError):  # the general way says what is wrong
        return pack_fields(n, segment, step_fields(agent))
    return marshal.dumps(
        (n, segment, ep, step, o, f, a, why, sc, rw, o2, te, tr, info, le, tn), _MARSHAL_VERSION
    )


def pack_record(n: int, segment: str, record: StepRecord) -> bytes:
    """Step ``n``'s record as the journal stores it (the fields of its JSON row)."""
    r = record
    return pack_fields(n, segment, (
        r.episode, r.step, r.observation, r.features, r.action, r.reason, r.scores, r.reward,
        r.next_observation, r.terminated, r.truncated, r.info, r.learning, r.training, r.details,
    ))  # fmt: skip


def pack_fields(n: int, segment: str, fields: tuple[Any, ...]) -> bytes:
    """Step ``n``'s record, given as the values of :data:`FIELDS`, as a frame body.

    Raises:
        TypeError: a value has no JSON form (as the JSON encoder would raise).
    """
    exact = _EXACT
    ep, st, o, f, a, why, sc, rw, o2, te, tr, info, le, tn, de = fields
    try:
        # Once per step, so written out: the scalars in one test (each call costs).
        if not (
            type(ep) is int and type(st) is int and type(o) in exact and type(f) in exact
            and type(a) in exact and type(why) in exact and type(rw) in exact
            and type(o2) in exact and type(te) in exact and type(tr) in exact
            and type(tn) in exact
        ):  # fmt: skip
            ep, st, o, f, a, why, rw, o2, te, tr, tn = (
                plain(v) for v in (ep, st, o, f, a, why, rw, o2, te, tr, tn)
            )
        values = [
            ep, st, o, f, a, why, sc if sc is None else plain(sc), rw, o2, te, tr, plain(info),
            le if le is None else plain(le), tn,
        ]  # fmt: skip
        if de is not None:  # journals of planners without details stay as they were
            values.append(plain(de))
    except TypeError:  # e.g. tuple dict keys: the JSON path converted everything first
        names = FIELDS if de is not None else _SHORT
        values = list(plain(jsonable(dict(zip(names, fields)))).values())  # noqa: B905
    except RecursionError:
        raise ValueError("Circular reference detected") from None
    return marshal.dumps((n, segment, *values), _MARSHAL_VERSION)


def pack_data(n: int, segment: str, record: Any) -> bytes:
    """A frame body for any JSON-able ``record`` (converted by :func:`jsonable` first),
    as ``(n, segment, None, data)``: four items, never a record's 16 or 17."""
    return marshal.dumps((n, segment, None, plain(jsonable(record))), _MARSHAL_VERSION)


def unpack(body: bytes) -> tuple[int, str, Any]:
    """``(n, segment, record)`` from a frame body; the record is plain JSON data.

    Raises:
        ValueError: the body is not a step frame of this format.
    """
    try:
        item = marshal.loads(body)
    except (EOFError, ValueError, TypeError) as err:
        raise ValueError(f"not marshal data ({err})") from None
    # (n, segment, *the record's values) or (n, segment, None, any JSON-able data)
    if type(item) is not tuple or len(item) not in (4, len(FIELDS) + 1, len(FIELDS) + 2):
        raise ValueError("not a step frame")
    n, segment = item[0], item[1]
    if type(n) is not int or type(segment) is not str:
        raise ValueError("not a step frame")
    if len(item) == 4:  # Journal.append_step
        record: Any = item[3]
    else:
        record = dict(zip(FIELDS, item[2:]))  # noqa: B905 (details is optional)
    try:
        _check(record)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    return n, segment, record


def _check(value: Any) -> None:
    """Refuse anything JSON could not have given (marshal also knows sets, bytes, code)."""
    cls = type(value)
    if cls in _EXACT:
        return
    if cls is list:
        for item in value:
            if type(item) not in _EXACT:
                _check(item)
        return
    if cls is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"a key of type {type(key).__name__}")
            if type(item) not in _EXACT:
                _check(item)
        return
    raise ValueError(f"a value of type {cls.__name__}")
