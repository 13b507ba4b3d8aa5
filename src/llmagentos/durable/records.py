"""Step records as the steps log stores them: MessagePack of plain data.

A step's record must leave the process before the next step begins, and encoding it
is most of what that costs: the C JSON encoder spends ~10 us on a Taxi-v4 record
(every float through ``repr``), and checking every value's type in Python before a
binary encoder ~2 us more. So the runner's records go to :mod:`msgpack` as they are,
with ``strict_types``: its C code packs the values that are exactly JSON's types and
hands every other one to a hook (:func:`_fast_default`) that converts what converts
the same wherever it stands (a NumPy array, a float subclass) and sends the rest the
general way: :func:`plain` first, which converts into exactly what the journal's JSON
encoder would have written and ``json.loads`` given back (tuples become lists, dict
keys strings as JSON spells them, NumPy values Python numbers, subclasses their base
types). What msgpack keeps that JSON has no word for (non-string keys, bytes, its own
``ExtType``) the reader converts as :func:`plain` would have: a reader gets the same
dicts as from the JSON rows of ``llmagentos.journal/2``; only JSON's types come out.
msgpack's ``Timestamp`` (its ext type -1), which the C packer also packs as it is, has
no JSON form: a record with one goes the general way, which refuses it as it refuses a
``datetime`` (:func:`_holds_ext_minus_one`), and a frame holding one is refused.

Frames written before (``llmagentos.steps/1``), and records msgpack cannot hold (ints
past 64 bits, nesting past its limit), are :mod:`marshal` data of plain values; the
first byte tells them apart (marshal's tuple is ``(``, never a msgpack array).
"""

from __future__ import annotations

import marshal
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from llmagentos._json import jsonable

if TYPE_CHECKING:
    from llmagentos.agent import Agent
    from llmagentos.types import StepRecord

__all__ = [
    "FIELDS", "pack_data", "pack_fields", "pack_record", "pack_step", "plain", "step_fields",
    "step_packer", "unpack",
]  # fmt: skip

_MARSHAL_VERSION = 2  # binary floats, no back-references (faster to write); stable since 2.5
_MARSHAL_TUPLE = b"("  # the first byte of marshal's tuple: msgpack's arrays start 0x9_ or 0xdc
# A str with a lone surrogate (JSON writes it as an escape and reads it back).
_UNICODE_ERRORS = "surrogatepass"
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
        return _new_dict(value)  # an exact dict (marshal takes no subclass)
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


class _NotPlain(Exception):
    """A value the runner's fast path leaves to the general one."""


def _fast_default(value: Any) -> Any:
    """msgpack's hook in :func:`step_packer`, for a value not exactly of JSON's types.

    It converts only what converts the same as a dict key and as a value (what the
    JSON encoder takes by ``isinstance``, and NumPy arrays, which are never keys);
    anything else (a tuple, a set, a NumPy integer, an object) goes the general way,
    where a key JSON refuses turns the whole record into :func:`jsonable`'s form.
    (msgpack's own ``ExtType`` and ``Timestamp`` objects the packer packs as they are,
    without this hook: an ExtType reads back as :func:`plain` converts it; a packed
    Timestamp :func:`step_packer` finds in the bytes, see :func:`_holds_ext_minus_one`.)
    """
    cls = type(value)
    if cls.__name__ == "ndarray" and cls.__module__ == "numpy":  # an env's action mask
        kind = value.dtype.kind
        if kind in "iub" or (kind == "f" and sys.modules["numpy"].isfinite(value).all()):
            return value.tolist()
    elif isinstance(value, str):
        return str.__str__(value)
    elif isinstance(value, int):
        return int.__int__(value)
    elif isinstance(value, float):
        return float.__float__(value)
    elif isinstance(value, list):
        return list(value)
    elif isinstance(value, dict):
        return dict(value.items())
    raise _NotPlain


def step_packer() -> Callable[[int, str, Agent], bytes]:
    """A ``pack_step(n, segment, agent)`` with a packer of its own (one is not
    thread-safe): the agent's last step as step ``n`` of ``segment``, a frame body.

    The fields of :func:`step_fields`, read from the Agent's own slots and packed by
    msgpack's C code, which checks every type on its way (:func:`_fast_default`); on
    Taxi-v4 every call made per step is a measurable part of a step. Whatever the
    fast path does not take goes through :func:`pack_fields`, which says what is wrong;
    so does a record the packer wrote a Timestamp into (no hook sees one), found in its
    bytes: a ``TypeError``, as for a ``datetime``, and nothing logged.
    """
    pack: Callable[[list[Any]], bytes] = msgpack.Packer(
        default=_fast_default, strict_types=True, unicode_errors=_UNICODE_ERRORS
    ).pack

    def pack_step(n: int, segment: str, agent: Agent) -> bytes:
        o, f, a, decision = agent._stepped
        o2, rw = agent._returned
        outcome = agent._outcome
        if decision is None:
            why = sc = de = None
        else:
            why, sc, de = decision.reason, decision.scores, decision.details
        info: Any
        if outcome is None:
            te, tr, info = False, False, {}
        else:
            te, tr, info = outcome.terminated, outcome.truncated, outcome.info
        mode = agent._mode_before if agent._mode_step is agent._stepped else agent._training
        values = [
            n, segment, agent.episode, agent.step_index - 1, o, f, a, why, sc, rw, o2, te, tr,
            info, agent._report, mode,
        ]  # fmt: skip
        if de is not None:  # journals of planners without details stay as they were
            values.append(de)
        try:
            body = pack(values)
        except Exception:  # the general way converts it, or says what is wrong
            return pack_fields(n, segment, step_fields(agent))
        if 0xFF in body and _holds_ext_minus_one(body):  # ~20 ns; rarely true
            return pack_fields(n, segment, step_fields(agent))
        return body

    return pack_step


def _holds_ext_minus_one(body: bytes) -> bool:
    """Whether msgpack data ``body`` may hold an ext of type -1: a ``Timestamp`` (or an
    ``ExtType`` given that code without its constructor's check), which the reader
    cannot give back as JSON data (:func:`unpack` refuses it).

    Never false for a body that holds one; rarely true for one that does not (the same
    bytes inside a number or a string of bytes): the caller then packs the record the
    general way, which is always right. The type byte, ``0xff``, follows an ext's head:
    right after fixext 1 to 16 (``0xd4``-``0xd8``), after a 1, 2 or 4-byte length for
    ext 8, 16 and 32 (``0xc7``-``0xc9``). ``bytes.find`` looks for it at C speed.
    """
    at = body.find(0xFF, 1)
    while at > 0:
        if (
            0xD4 <= body[at - 1] <= 0xD8
            or (at >= 2 and body[at - 2] == 0xC7)
            or (at >= 3 and body[at - 3] == 0xC8)
            or (at >= 5 and body[at - 5] == 0xC9)
        ):
            return True
        at = body.find(0xFF, at + 1)
    return False


def pack_step(n: int, segment: str, agent: Agent) -> bytes:
    """The agent's last step as step ``n`` of ``segment`` (see :func:`step_packer`,
    which a loop packing many steps should use)."""
    return step_packer()(n, segment, agent)


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
        ValueError: a value contains itself.
    """
    return _dump([n, segment, *_convert(fields)])


def _convert(fields: tuple[Any, ...] | list[Any]) -> list[Any]:
    """The record's values (``details`` last, maybe ``None``) as the JSON rows held them;
    ``details`` is left out when it is ``None``."""
    exact = _EXACT
    ep, st, o, f, a, why, sc, rw, o2, te, tr, info, le, tn, de = fields
    try:
        # The scalars in one test (each call costs).
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
        if de is not None:
            values.append(plain(de))
    except TypeError:  # e.g. tuple dict keys: the JSON path converted everything first
        names = FIELDS if de is not None else _SHORT
        values = list(plain(jsonable(dict(zip(names, fields)))).values())  # noqa: B905
    except RecursionError:
        raise ValueError("Circular reference detected") from None
    return values


def _dump(item: list[Any]) -> bytes:
    """A frame body of plain data: msgpack, or marshal for what msgpack cannot hold."""
    try:
        packed: bytes = msgpack.packb(item, unicode_errors=_UNICODE_ERRORS)
        return packed
    except (OverflowError, ValueError):  # an int past 64 bits, nesting past 511 levels
        return marshal.dumps(tuple(item), _MARSHAL_VERSION)


def pack_data(n: int, segment: str, record: Any) -> bytes:
    """A frame body for any JSON-able ``record`` (converted by :func:`jsonable` first),
    as ``(n, segment, None, data)``: four items, never a record's 16 or 17."""
    return _dump([n, segment, None, plain(jsonable(record))])


def _load(body: bytes) -> tuple[Any, bool]:
    """The frame's item, and whether it is msgpack (its values not yet converted)."""
    if body[:1] == _MARSHAL_TUPLE:
        try:
            return marshal.loads(body), False
        except (EOFError, ValueError, TypeError) as err:
            raise ValueError(f"not marshal data ({err})") from None
    try:
        item = msgpack.unpackb(body, strict_map_key=False, unicode_errors=_UNICODE_ERRORS)
    except Exception as err:  # msgpack's errors for bad data vary in type
        raise ValueError(f"not msgpack data ({err})") from None
    return (tuple(item) if type(item) is list else item), True


def unpack(body: bytes) -> tuple[int, str, Any]:
    """``(n, segment, record)`` from a frame body; the record is plain JSON data.

    Raises:
        ValueError: the body is not a step frame of this format.
    """
    item, packed = _load(body)
    # (n, segment, *the record's values) or (n, segment, None, any JSON-able data)
    if type(item) is not tuple or len(item) not in (4, len(FIELDS) + 1, len(FIELDS) + 2):
        raise ValueError("not a step frame")
    n, segment = item[0], item[1]
    if type(n) is not int or type(segment) is not str:
        raise ValueError("not a step frame")
    try:
        if len(item) == 4:  # Journal.append_step: plain when written
            record: Any = item[3]
            _check(record)
        else:
            record = dict(zip(FIELDS, item[2:]))  # noqa: B905 (details is optional)
            try:
                _check(record)  # plain already, as nearly every record is
            except ValueError:
                if not packed:
                    raise
                # As the runner's fast path packed it (a key JSON spells as a string,
                # bytes): converted now as the general way would have then.
                values = list(item[2:])
                _no_timestamp(values)
                if len(values) < len(FIELDS):
                    values.append(None)
                record = dict(zip(FIELDS, _convert(values)))  # noqa: B905
                _check(record)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except TypeError as err:  # what no writer of a frame lets through: damage
        raise ValueError(f"not a record ({err})") from None
    return n, segment, record


def _no_timestamp(value: Any) -> None:
    """Refuse msgpack's ``Timestamp`` anywhere in ``value``, a key too: no writer logs one
    (the general way refuses it as a value and writes its text as a key), so a frame
    with one was written by hand. (An ``ExtType`` is what the runner's fast path logs.)
    """
    cls = type(value)
    if cls is list or cls is tuple:
        for item in value:
            if type(item) not in _EXACT:
                _no_timestamp(item)
    elif cls is dict:
        for key, item in value.items():
            if type(key) is not str:
                _no_timestamp(key)
            if type(item) not in _EXACT:
                _no_timestamp(item)
    elif cls is msgpack.Timestamp:
        raise ValueError("a msgpack Timestamp (ext type -1), which no writer logs")


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
