"""A session's agent as bytes for the session store: JSON where the agent allows, else pickle.

Loading a pickle runs code, so the store prefers JSON. A session's agent is built by
the service's factory; what a session adds to it (a learned Q-table, counters, random
generators' states, the environment mid-episode) is the *difference* from a freshly
built agent. :class:`StateCodec` stores that difference as JSON, taken against a
pristine agent built at start, and loads it by applying it to a freshly built one:
no unpickling, and nothing is instantiated but classes of the modules the agent is
made of (and :mod:`llmagentos.types`), without running their code.

The difference is exact for what it covers: plain data (numbers, strings, lists,
tuples, dicts, sets), objects whose state is their attributes, NumPy arrays, scalars
and generators, :class:`random.Random`, and bound methods; shared references keep
their identity (the learner and the planner keep one Q-table). Anything else (a
lock, a socket, a class with its own pickling) makes that state fall back to pickle,
which the store then seals (:mod:`llmagentos.service.store`); a service whose store
is unsigned refuses pickled state. The one identity not kept: mutable containers
nested inside a container that did not change, if referenced from elsewhere too.

Stored bytes start with a format tag: ``J`` (JSON difference) or ``P`` (pickle).
"""

from __future__ import annotations

import array
import collections
import contextlib
import itertools
import json
import pickle
import random
import sys
import types
from collections.abc import Callable
from typing import Any

from llmagentos.build import BuiltAgent
from llmagentos.exceptions import ConfigError, SessionStateRefused, SessionStoreError
from llmagentos.service.state_format import (
    PRIMITIVE,
    SAME,
    Decoder,
    attribute_state,
    attributes,
    b64,
    buildable,
    is_nan,
    numpy_module,
    plain,
    type_name,
)

__all__ = ["JSON_TAG", "PICKLE_TAG", "StateCodec"]

JSON_TAG = b"J"
PICKLE_TAG = b"P"
_FORMAT = "llmagentos.session-delta/1"
_RAW = "raw"  # the mark of a list written out as a bare JSON array


class _NotJson(Exception):
    """This state cannot be expressed as a JSON difference (falls back to pickle)."""


class _Encoder:
    """One encoding: the delta of ``live`` against the pristine ``base``."""

    def __init__(self, codec: StateCodec) -> None:
        self.codec = codec
        self.live_at: dict[int, Any] = {}  # id of a live object -> a path or an ordinal
        self.base_at: dict[int, list[Any]] = {}  # id of a base object -> its path
        self.keep: list[Any] = []  # keeps encoded objects alive, so ids stay unique
        self.count = 0

    # The delta of one position: live and base at the same path.
    def delta(self, live: Any, base: Any, path: list[Any]) -> Any:
        kind = type(live)
        if kind in PRIMITIVE:
            if type(base) is kind and (live == base or (is_nan(live) and is_nan(base))):
                return SAME
            return {"=": live}
        if live is base:
            return SAME  # shared by every session (a module-level function, a constant)
        seen = self.live_at.get(id(live))
        if seen is not None:
            if isinstance(seen, list) and self.base_at.get(id(base)) == seen:
                return SAME  # the same sharing as in a freshly built agent
            return {"=": self._ref(seen)}
        if type(base) is not kind or id(base) in self.base_at:
            return {"=": self.full(live)}
        self.live_at[id(live)] = path
        self.base_at[id(base)] = path
        self.keep.append(live)
        if kind is list or kind is tuple or kind is dict or kind is collections.OrderedDict:
            return self._container(live, base, path)
        if kind is set or kind is frozenset:
            if live == base and set(map(type, live)) <= PRIMITIVE:
                return SAME
            return {"=": self.full(live, registered=True)}
        if kind is random.Random:
            state = live.getstate()
            return SAME if state == base.getstate() else {"random": _random_state(state)}
        if kind is types.MethodType:
            if live.__func__ is not base.__func__:
                raise _NotJson(f"a method changed at {path}")
            inner = self.delta(live.__self__, base.__self__, [*path, ["a", "__self__"]])
            if inner is not SAME and "=" in inner:
                raise _NotJson(f"a method's object was replaced at {path}")
            return SAME if inner is SAME else {"o": {"__self__": inner}}
        np = numpy_module()
        if np is not None and isinstance(
            live, np.ndarray | np.random.Generator | np.generic | np.dtype
        ):
            return self._numpy_delta(live, base, np)
        if not attribute_state(kind):
            raise _NotJson(f"a {type_name(kind)} at {path}")
        mine, theirs = attributes(live), attributes(base)
        changed: dict[str, Any] = {}
        for attr, value in mine.items():
            step = [*path, ["a", attr]]
            if attr in theirs:
                inner = self.delta(value, theirs[attr], step)
                if inner is not SAME:
                    changed[attr] = inner
            else:
                changed[attr] = {"=": self.full(value)}
        gone = [attr for attr in theirs if attr not in mine]
        if not changed and not gone:
            return SAME
        node: dict[str, Any] = {"o": changed}
        if gone:
            node["x"] = gone
        return node

    def _container(self, live: Any, base: Any, path: list[Any]) -> Any:
        if self.codec.isplain(base):
            # == (in C, stopping at the first difference) rules most changes out;
            # equal pickles then prove equal types and layout too. An uncomparable or
            # unpicklable value is not plain data: written out whole.
            with contextlib.suppress(Exception):
                if live == base and pickle.dumps(live) == self.codec.pickled(base):
                    return SAME
            return {"=": self.full(live, registered=True)}
        if isinstance(live, dict):
            if list(live) != list(base):
                return {"=": self.full(live, registered=True)}
            items = []
            for index, (key, value) in enumerate(live.items()):
                inner = self.delta(value, base[key], [*path, ["k", index]])
                if inner is not SAME:
                    items.append([index, inner])
            return {"d": items} if items else SAME
        if len(live) != len(base):
            return {"=": self.full(live, registered=True)}
        changes = []
        for index, (mine, theirs) in enumerate(zip(live, base, strict=True)):
            inner = self.delta(mine, theirs, [*path, ["i", index]])
            if inner is not SAME:
                changes.append([index, inner])
        return {"l": changes} if changes else SAME

    def _numpy_delta(self, live: Any, base: Any, np: Any) -> Any:
        if isinstance(live, np.ndarray):
            if live.dtype.hasobject or type(live) is not np.ndarray:
                raise _NotJson("a NumPy array of objects")
            if live.dtype == base.dtype and live.shape == base.shape:
                if np.array_equal(live, base, equal_nan=live.dtype.kind in "fc"):
                    return SAME
                return {"nd": b64(np.ascontiguousarray(live).tobytes())}
            return {"=": self.full(live, registered=True)}
        if isinstance(live, np.random.Generator):
            mine, theirs = _generator(live), _generator(base)
            return SAME if mine == theirs else {"=": self.full(live, registered=True)}
        if isinstance(live, np.dtype):
            return SAME if live == base else {"=": self.full(live, registered=True)}
        if live.dtype == base.dtype and live.tobytes() == base.tobytes():
            return SAME
        return {"=": self.full(live, registered=True)}

    def _table(self, rows: list[Any], number: int) -> dict[str, Any] | None:
        """A list of lists of primitives (a Q-table), checked without a Python loop; all
        floats (or all 64-bit ints) go out packed, else as bare arrays. Each row is
        marked so no other place may share it."""
        if not rows or set(map(type, rows)) != {list}:
            return None
        kinds = set(map(type, itertools.chain.from_iterable(rows)))
        if not kinds <= PRIMITIVE:
            return None
        ids = list(map(id, rows))
        if len(set(ids)) != len(ids) or not self.live_at.keys().isdisjoint(ids):
            return None  # a row twice, or seen before: written out the slow way
        self.live_at.update(zip(ids, itertools.repeat(_RAW)))
        if kinds in ({float}, {int}):
            code = "d" if kinds == {float} else "q"
            # An int beyond 64 bits does not pack: the rows go as a plain list then.
            with contextlib.suppress(OverflowError):
                packed = array.array(code, itertools.chain.from_iterable(rows))
                if sys.byteorder != "little":
                    packed.byteswap()
                lengths = list(map(len, rows))
                data = b64(packed.tobytes())
                return {"$": "rows", "#": number, "t": code, "n": lengths, "v": data}
        return {"$": "list", "#": number, "v": rows}

    def _ref(self, seen: Any) -> dict[str, Any]:
        if seen is _RAW:
            raise _NotJson("a list of numbers referenced from two places")
        return {"$": "ref", "p": seen} if isinstance(seen, list) else {"$": "ref", "n": seen}

    def _number(self, value: Any) -> int:
        self.count += 1
        self.live_at[id(value)] = self.count
        self.keep.append(value)
        return self.count

    # A value written out whole (a new object, or one that replaced the base's).
    def full(self, value: Any, *, registered: bool = False) -> Any:
        kind = type(value)
        if kind in PRIMITIVE:
            return value
        if registered:
            self.live_at.pop(id(value), None)  # numbered below instead of by path
        seen = self.live_at.get(id(value))
        if seen is not None:
            return self._ref(seen)
        if kind is tuple:
            return {"$": "tuple", "v": [self.full(item) for item in value]}
        if kind is bytes:
            return {"$": "bytes", "v": b64(value)}
        if kind is list and set(map(type, value)) <= PRIMITIVE:
            # A list of primitives (a Q-table row) goes out as it is, unnumbered: it may
            # not be shared with another place, which the "raw" mark makes sure of.
            self.live_at[id(value)] = _RAW
            self.keep.append(value)
            return value
        number = self._number(value)
        if kind is list:
            table = self._table(value, number)
            if table is not None:
                return table
            return {"$": "list", "#": number, "v": [self.full(item) for item in value]}
        if kind is dict or kind is collections.OrderedDict:
            items = [[self.full(k), self.full(v)] for k, v in value.items()]
            tag = "dict" if kind is dict else "odict"
            return {"$": tag, "#": number, "v": items}
        if kind is set or kind is frozenset:
            if not all(type(item) in PRIMITIVE for item in value):
                raise _NotJson("a set of non-primitive values")
            return {"$": kind.__name__, "#": number, "v": list(value)}
        if kind is random.Random:
            return {"$": "random", "#": number, "v": _random_state(value.getstate())}
        if kind is types.MethodType:
            func: Any = value.__func__
            owner: Any = value.__self__
            name = str(getattr(func, "__name__", ""))
            if getattr(type(owner), name, None) is not func:
                raise _NotJson(f"a bound method {name} not found on its class")
            return {"$": "method", "#": number, "s": self.full(owner), "f": name}
        np = numpy_module()
        if np is not None and isinstance(value, np.ndarray):
            if value.dtype.hasobject or kind is not np.ndarray or value.dtype.fields:
                raise _NotJson("a NumPy array of objects or records")
            data = b64(np.ascontiguousarray(value).tobytes())
            return {"$": "nd", "#": number, "t": value.dtype.str, "s": list(value.shape), "v": data}
        if np is not None and isinstance(value, np.random.Generator):
            return {"$": "gen", "#": number, "v": _generator(value)}
        if np is not None and isinstance(value, np.generic):
            return {"$": "np", "#": number, "t": value.dtype.str, "v": b64(value.tobytes())}
        if np is not None and isinstance(value, np.dtype):
            if value.fields or value.subdtype:
                raise _NotJson("a structured NumPy dtype")
            return {"$": "dtype", "#": number, "t": value.str}
        name = type_name(kind)
        if self.codec.allowed(name) is not kind:
            raise _NotJson(f"a {name}")
        written = {attr: self.full(v) for attr, v in attributes(value).items()}
        return {"$": "obj", "#": number, "c": name, "a": written}


def _random_state(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _generator(generator: Any) -> dict[str, Any]:
    bits = generator.bit_generator
    seed = getattr(bits, "seed_seq", None)
    seeds = None
    if seed is not None and type(seed).__name__ == "SeedSequence":
        entropy = seed.entropy
        seeds = {
            "entropy": entropy if isinstance(entropy, int | None) else [int(e) for e in entropy],
            "spawn_key": [int(k) for k in seed.spawn_key],
            "pool_size": int(seed.pool_size),
            "children": int(seed.n_children_spawned),
        }
    return {"bits": type(bits).__name__, "state": bits.state, "seed": seeds}


class StateCodec:
    """Encodes a session's agent for the store, and decodes it.

    Args:
        factory: the service's agent factory (built twice here: the pristine agent
            every difference is taken against, and a probe that must equal it).
        allow_pickle: fall back to pickle for state JSON cannot express (only with
            a sealed store: unsealed pickled state is never written nor loaded).

    Raises:
        ConfigError: the agent's state needs pickle and ``allow_pickle`` is off.
    """

    def __init__(self, factory: Callable[[], BuiltAgent], *, allow_pickle: bool) -> None:
        self.allow_pickle = allow_pickle
        self._template = factory()
        self._classes: dict[str, type] = {}
        self._collect(self._template, set())
        # Classes a stored state may build: those of the modules the pristine agent is
        # made of (an EpisodeState made lazily, a Decision), never anything imported
        # because a stored state named it.
        self.modules = {cls.__module__ for cls in self._classes.values()} | {"llmagentos.types"}
        self._plain: dict[int, bool] = {}
        self._pickled: dict[int, bytes] = {}
        self.why_not_json: str | None = None
        probe = factory()
        try:
            if _Encoder(self).delta(probe, self._template, []) is not SAME:
                self.why_not_json = "the factory builds agents that differ from each other"
        except _NotJson as err:
            self.why_not_json = str(err)
        finally:
            probe.agent.close()
        if self.why_not_json is not None and not allow_pickle:
            raise ConfigError(
                "state_secret",
                f"this agent's state cannot be stored as JSON ({self.why_not_json}) and "
                "pickled state must be sealed: give the store a state secret",
            )

    @property
    def json(self) -> bool:
        """Whether sessions are stored as JSON differences."""
        return self.why_not_json is None

    def _collect(self, value: Any, seen: set[int]) -> None:
        # The classes the pristine agent is made of: the only ones a delta may build.
        if id(value) in seen or type(value) in PRIMITIVE:
            return
        seen.add(id(value))
        if isinstance(value, list | tuple | set | frozenset):
            for item in value:
                self._collect(item, seen)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._collect(key, seen)
                self._collect(item, seen)
        elif isinstance(value, types.MethodType):
            self._collect(value.__self__, seen)
        elif attribute_state(type(value)) and type(value).__module__ != "builtins":
            self._classes.setdefault(type_name(type(value)), type(value))
            for item in attributes(value).values():
                self._collect(item, seen)

    def allowed(self, name: str) -> type | None:
        """The class ``module:qualname`` if a stored state may build it."""
        module_name, _, qualname = name.partition(":")
        module = sys.modules.get(module_name) if module_name in self.modules else None
        found: Any = module
        for part in qualname.split("."):
            found = getattr(found, part, None) if found is not None else None
        if isinstance(found, type) and found.__module__ == module_name and buildable(found):
            return found
        return None

    def isplain(self, base: Any) -> bool:
        known = self._plain.get(id(base))
        if known is None:
            known = self._plain[id(base)] = plain(base)
        return known

    def pickled(self, base: Any) -> bytes:
        data = self._pickled.get(id(base))
        if data is None:
            data = self._pickled[id(base)] = pickle.dumps(base)
        return data

    def dumps(self, built: BuiltAgent) -> bytes:
        """The session's state as stored bytes (run it off the event loop).

        Raises:
            SessionStoreError: the state needs pickle and pickle is not allowed.
        """
        if self.json:
            try:
                delta = _Encoder(self).delta(built, self._template, [])
                document = {"format": _FORMAT, "delta": delta}
                return JSON_TAG + json.dumps(document, separators=(",", ":")).encode()
            except _NotJson as err:
                reason = str(err)
        else:
            reason = self.why_not_json or ""
        if not self.allow_pickle:
            raise SessionStoreError(
                f"this session's state cannot be stored as JSON ({reason}) and this "
                "service's store is unsigned, so it is not pickled either"
            )
        return PICKLE_TAG + pickle.dumps(built)

    def loads(self, data: bytes, fresh: BuiltAgent | None) -> BuiltAgent:
        """The session's agent from stored bytes, built on ``fresh`` (a freshly built
        agent; needed for JSON, ignored by pickle). Run it off the event loop.

        Raises:
            SessionStateRefused: pickled state in an unsigned store, an unknown format,
                or a JSON state that does not fit this service's agent.
        """
        tag, body = data[:1], data[1:]
        if tag == PICKLE_TAG:
            if not self.allow_pickle:
                raise SessionStateRefused(
                    "unsigned", "a pickled state in an unsigned store is never loaded"
                )
            if fresh is not None:
                fresh.agent.close()
            built: BuiltAgent = pickle.loads(body)
            return built
        if tag != JSON_TAG or fresh is None:
            raise SessionStateRefused("forged", "the stored state is in no known format")
        try:
            document = json.loads(body)
            if not isinstance(document, dict) or document.get("format") != _FORMAT:
                raise ValueError(f"not a {_FORMAT} document")
            decoded = Decoder(self.allowed, fresh).apply(fresh, document["delta"])
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            raise SessionStateRefused(
                "forged", f"the stored state does not fit this service's agent: {err}"
            ) from err
        if not isinstance(decoded, BuiltAgent):
            raise SessionStateRefused("forged", "the stored state is not an agent")
        return decoded
