"""Stand-in LLMs for the hybrid ablation: FunctionModels that read a TextMaze observation.

Each answers with the planner's JSON (``reason``, ``action``) and is a fixed function of
the observation text, as SmolLM2 at temperature 0 is:

- ``toward``: an open side toward the dock (the farther leg of the bearing first), else
  the first open side: right in most cells, and led into the large maze's trap at (5, 4);
- ``wrong30``: ``toward``, except in about 30% of cells (chosen by a hash of the text),
  where it names the side after it, clockwise, wall or not; ``wrong45`` likewise in
  about 45%. A suffix ``:<salt>`` (``wrong30:b``) salts the hash, so another set of
  cells is wrong: as a small model's answers differ in a few cells from one CPU's
  rounding to another's;
- ``random``: one action per cell, drawn from a generator seeded by the text.
"""

from __future__ import annotations

import hashlib
import json
import random
import re

from llmagentos.llm.testing import FunctionModel
from llmagentos.llm.types import ModelRequest

ACTIONS = ("north", "east", "south", "west")
STAND_INS = ("toward", "wrong30", "wrong45", "random")
"""The stand-ins' names; ``wrong30`` and ``wrong45`` also take a ``:<salt>`` suffix."""


def _observation(request: ModelRequest) -> str:
    return next(m.content or "" for m in request.messages if m.role == "user")


def _toward(text: str) -> tuple[str, str]:
    sides = dict(re.findall(r"(North|East|South|West): (open|wall)", text))
    bearing = sorted(
        ((int(n), d) for n, d in re.findall(r"(\d+) steps? (north|east|south|west)", text)),
        reverse=True,
    )
    for steps, direction in bearing:
        if sides.get(direction.capitalize()) == "open":
            return direction, f"the dock is {steps} steps {direction}"
    way = next((side.lower() for side, state in sides.items() if state == "open"), "north")
    return way, "the only way on"


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def stand_in(name: str) -> FunctionModel:
    """The stand-in LLM called ``name`` (one of :data:`STAND_INS`, salted or not)."""
    kind, _, salt = name.partition(":")
    if kind not in STAND_INS or (salt and not kind.startswith("wrong")):
        raise ValueError(f"unknown stand-in {name!r}: one of {', '.join(STAND_INS)}")
    wrong_percent = int(kind[5:]) if kind.startswith("wrong") else 0

    def answer(request: ModelRequest) -> str:
        text = _observation(request)
        action, reason = _toward(text)
        if wrong_percent and _digest(salt + text) % 100 < wrong_percent:
            action, reason = ACTIONS[(ACTIONS.index(action) + 1) % 4], "a wrong guess"
        elif name == "random":
            action, reason = random.Random(_digest(text)).choice(ACTIONS), "a random guess"
        return json.dumps({"reason": reason, "action": action})

    return FunctionModel(answer, model_id=f"stand-in:{name}")
