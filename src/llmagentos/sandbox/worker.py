"""The candidate's process: imports ``solution`` and answers the test runner's requests.

Runs INSIDE the sandbox as ``python -c <wire.py + this file> IN_FD OUT_FD``, a child of
the test runner (:mod:`llmagentos.sandbox.testing`). Nothing here is trusted: the
candidate's code runs in this process and may change any of it. It can only make its
functions return other values, which the runner receives as plain data and judges
with the task's own asserts, in its own process. Standard library only.

Requests (``op``, then the operands as tagged values; see ``wire``)::

    {"op": "call", "args": [f, x, y], "kwargs": [["key", v]], "sync": [1]}
    {"op": "getattr" | "setattr" | "len" | "iter" | "next" | "str" | "repr"
          | "getitem" | "contains" | "eq" | "lt" | "le", "args": [...]}

Replies: ``{"ok": value, "sync": [[i, value]]}``, ``{"raise": {...}}``, or, while
a call runs, ``{"callback": id, "args": [...], "kwargs": [...]}`` (the runner calls one
of its own functions the test passed in and answers ``ok``/``raise``).
"""

import builtins
import operator
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # shipped after wire.py's source, which defines these
    from llmagentos.sandbox.wire import WireError, decode, encode, receive, send

IN_FD, OUT_FD = int(sys.argv[1]), int(sys.argv[2])
SOLUTION_FILE = "solution.py"
objects: dict[str, Any] = {}
counter = [0]


class CallbackError(Exception):
    """A function of the test, called by the solution, raised."""


def keep(value: Any) -> list[Any]:
    """A reference to ``value`` (it stays here; the runner gets its id)."""
    counter[0] += 1
    key = f"o{counter[0]}"
    objects[key] = value
    kind = "class" if isinstance(value, type) else "callable" if callable(value) else "object"
    base = None
    if isinstance(value, type) and issubclass(value, BaseException):
        base = next(
            (c.__name__ for c in value.__mro__ if getattr(builtins, c.__name__, None) is c),
            "Exception",
        )
    return ["h", key, kind, type(value).__name__, base]


class Callback:
    """A function of the test, passed to the solution: calling it asks the runner."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        send(OUT_FD, {"callback": self.key, **pack(list(args), kwargs)})
        return answer(receive(IN_FD))


def resolve(tag: list[Any]) -> Any:
    if tag[0] == "h":
        key = str(tag[1])
        if key.startswith("m:"):
            return getattr(sys.modules["solution"], key[2:])
        if key not in objects:
            raise WireError(f"unknown object {key}")
        return objects[key]
    if tag[0] == "r":
        return Callback(str(tag[1]))
    if tag[0] == "m":
        return sys.modules["solution"]
    raise WireError(f"unknown tag {tag[0]!r}")


def pack(args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "args": [encode(a, keep) for a in args],
        "kwargs": [[k, encode(v, keep)] for k, v in kwargs.items()],
    }


def answer(reply: Any) -> Any:
    if "ok" in reply:
        return decode(reply["ok"], resolve)
    raise CallbackError(str(reply.get("raise", {}).get("message", "the test's function failed")))


def where(err: BaseException) -> str:
    import traceback  # only on a failure: its import costs every run

    spots = [
        f"{SOLUTION_FILE}:{frame.lineno} in {frame.name}: {(frame.line or '').strip()}"
        for frame in traceback.extract_tb(err.__traceback__)
        if frame.filename.endswith(SOLUTION_FILE)
    ]
    return spots[-1] if spots else ""


def failure(err: BaseException) -> dict[str, Any]:
    import traceback

    cls = type(err)
    base = next(
        (c.__name__ for c in cls.__mro__ if getattr(builtins, c.__name__, None) is c),
        "Exception",
    )
    exported = None
    module = sys.modules.get("solution")
    if module is not None and getattr(module, cls.__name__, None) is cls:
        exported = cls.__name__
    return {
        "type": cls.__name__,
        "base": base,
        "exported": exported,
        "message": str(err)[:2000],
        "where": where(err),
        "traceback": "".join(traceback.format_exception(cls, err, err.__traceback__))[-3000:],
    }


OPS: dict[str, Callable[..., Any]] = {
    "call": lambda f, *a, **k: f(*a, **k),
    "getattr": getattr,
    "setattr": setattr,
    "len": len,
    "iter": iter,
    "next": next,
    "str": str,
    "repr": repr,
    "getitem": operator.getitem,
    "contains": operator.contains,
    "eq": operator.eq,
    "lt": operator.lt,
    "le": operator.le,
}


def handle(request: dict[str, Any]) -> dict[str, Any]:
    op = OPS[request["op"]]
    args = [decode(a, resolve) for a in request["args"]]
    kwargs = {str(k): decode(v, resolve) for k, v in request.get("kwargs", [])}
    value = op(*args, **kwargs)
    sync = [[i, encode(args[i], keep)] for i in request.get("sync", [])]
    return {"ok": encode(value, keep), "sync": sync}


def main() -> None:
    sys.path.insert(0, "")
    try:
        import solution  # type: ignore[import-not-found]  # the candidate's code runs here
    except BaseException as err:
        send(OUT_FD, {"raise": failure(err)})
        return
    names = getattr(solution, "__all__", None)
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        names = [n for n in vars(solution) if not n.startswith("_")]
    send(OUT_FD, {"ok": ["l", [["s", str(n)] for n in names]]})
    while True:
        request = receive(IN_FD)
        try:
            reply = handle(request)
        except BaseException as err:
            reply = {"raise": failure(err)}
        send(OUT_FD, reply)


if __name__ == "__main__":
    main()
