"""The wire between the test runner and the candidate's process: frames and plain data.

Shipped as source text into the sandbox, to both sides; standard library only.
A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. Values cross
as tagged data, rebuilt by the receiver as exact built-in types, so nothing the
candidate sends can carry behaviour (no ``__eq__`` that always says yes)::

    ["n"] None   ["b", true]   ["i", "12"]   ["f", "0.5"]   ["c", "1.0", "-2.0"]
    ["s", "text"]   ["y", "<base64>"]   ["l", [...]]   ["t", [...]]   ["S", [...]]
    ["F", [...]]   ["d", [[k, v], ...]]   ["Q", "1", "3"] Fraction   ["D", "1.5"] Decimal

Anything else is a reference the sender keeps: the encoder's ``other`` callback turns
it into a tag (``["h", id]`` for the candidate's objects, ``["r", id]`` for the
runner's callables) and the decoder's ``resolve`` callback turns such tags back.
"""

import binascii
import json
import os
import sys
from collections.abc import Callable
from typing import Any

MAX_FRAME = 16 << 20
MAX_DEPTH = 200


class WireError(Exception):
    """A frame or value that breaks the protocol (the peer is broken or hostile)."""


class PeerGone(Exception):
    """The other side closed its end (it exited, or was killed)."""


def send(fd: int, message: Any) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_FRAME:
        raise WireError(f"message of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    view = memoryview(len(data).to_bytes(4, "big") + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise PeerGone("the other side closed the connection")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def receive(fd: int) -> Any:
    size = int.from_bytes(_read_exactly(fd, 4), "big")
    if size > MAX_FRAME:
        raise WireError(f"frame of {size} bytes is over the {MAX_FRAME}-byte limit")
    try:
        return json.loads(_read_exactly(fd, size))
    except ValueError as err:  # also a too-long int
        raise WireError(f"not JSON: {err}") from None


def encode(value: Any, other: Callable[[Any], list[Any]], depth: int = 0) -> list[Any]:
    """``value`` as tagged data; ``other(value)`` for what is not plain data."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply (or refers to itself)")
    deeper = depth + 1
    # Exact types first; subclasses (IntEnum, namedtuple...) cross as their base type.
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        return ["b", bool(value)]
    if isinstance(value, int):
        return ["i", int.__repr__(value)]
    if isinstance(value, float):
        return ["f", float.__repr__(value)]
    if isinstance(value, complex):
        return ["c", float.__repr__(value.real), float.__repr__(value.imag)]
    if isinstance(value, str):
        return ["s", str.__str__(value)]
    if isinstance(value, bytes | bytearray):
        return ["y", binascii.b2a_base64(bytes(value), newline=False).decode()]
    # Only a process that imported fractions/decimal can hold their values (and
    # importing them here would cost every run their start-up time).
    fractions, decimal = sys.modules.get("fractions"), sys.modules.get("decimal")
    if fractions is not None and isinstance(value, fractions.Fraction):
        return ["Q", str(int(value.numerator)), str(int(value.denominator))]
    if decimal is not None and isinstance(value, decimal.Decimal):
        return ["D", decimal.Decimal.__str__(value)]
    for kind, tag in ((tuple, "t"), (list, "l"), (frozenset, "F"), (set, "S")):
        if isinstance(value, kind):
            items: Any = value
            return [tag, [encode(item, other, deeper) for item in items]]
    if isinstance(value, dict):
        items = dict.items(value)
        return ["d", [[encode(k, other, deeper), encode(v, other, deeper)] for k, v in items]]
    return other(value)


def _text(payload: Any) -> str:
    if not isinstance(payload, str):
        raise WireError(f"expected a string, got {type(payload).__name__}")
    return payload


def _items(data: list[Any]) -> list[Any]:
    if len(data) != 2 or not isinstance(data[1], list):
        raise WireError(f"malformed {data[0]!r} value")
    return data[1]


def decode(data: Any, resolve: Callable[[list[Any]], Any], depth: int = 0) -> Any:
    """Rebuild a value :func:`encode` made; ``resolve(tag)`` for references."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise WireError(f"malformed value {str(data)[:80]!r}")
    tag, deeper = data[0], depth + 1
    try:
        if tag == "n":
            return None
        if tag == "b":
            if not isinstance(data[1], bool):
                raise WireError("malformed bool")
            return data[1]
        if tag == "i":
            return int(_text(data[1]))
        if tag == "f":
            return float(_text(data[1]))
        if tag == "c":
            return complex(float(_text(data[1])), float(_text(data[2])))
        if tag == "s":
            return _text(data[1])
        if tag == "y":
            return binascii.a2b_base64(_text(data[1]).encode(), strict_mode=True)
        if tag == "Q":
            from fractions import Fraction

            return Fraction(int(_text(data[1])), int(_text(data[2])))
        if tag == "D":
            from decimal import Decimal

            return Decimal(_text(data[1]))
        if tag in ("l", "t", "S", "F"):
            items = [decode(item, resolve, deeper) for item in _items(data)]
            kinds: dict[str, Callable[[list[Any]], Any]] = {
                "l": list,
                "t": tuple,
                "S": set,
                "F": frozenset,
            }
            return kinds[tag](items)
        if tag == "d":
            pairs = _items(data)
            result = {}
            for pair in pairs:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise WireError("malformed dict item")
                result[decode(pair[0], resolve, deeper)] = decode(pair[1], resolve, deeper)
            return result
    except (IndexError, ValueError, TypeError, ArithmeticError) as err:
        raise WireError(f"malformed {tag!r} value: {err}") from None
    return resolve(data)
