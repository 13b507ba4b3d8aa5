"""Time and memory to create an agent, beside Agno and LangGraph when they are installed.

llmagentos: ``Agent`` of four fresh trivial seed-style modules (module creation included).
Agno: ``Agent(system_message=...)`` with no model, as in Agno's own instantiation perf test.
LangGraph: a one-node ``StateGraph`` compiled (no model, no tools: its lightest agent).

Agno publishes ~3 us and ~6.6 KiB per agent. Time is compared with Agno measured in the
same run (ratio <= 1: no slower than Agno, whose own figure is the 3 us); memory, which
does not depend on the machine's speed, with the published 6.6 KiB.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _common import BenchResult, Case, Check, clock, interleave, ratio_text
from _modules import trivial_agent

NAME = "instantiation"
PUBLISHED_US = 3.0
PUBLISHED_KIB = 6.6
TIME_TARGET = 1.0
MEMORY_TARGET = 1.0


@dataclass(frozen=True)
class Contender:
    key: str
    what: str
    make: Callable[[], object]
    count: int
    """Creations per timed repeat."""
    keep: int
    """Objects kept alive for the memory measurement."""


def _agno(scale: int) -> Contender:
    os.environ.setdefault("AGNO_TELEMETRY", "false")
    from agno.agent import Agent

    def make() -> object:
        return Agent(system_message="Be concise, reply with one sentence.")

    what = "agno Agent(system_message=...), no model"
    return Contender("agno", what, make, 10_000 // scale, 1_000 // scale)


def _langgraph(scale: int) -> Contender:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        count: int

    def node(state: State) -> State:
        return {"count": state["count"] + 1}

    def make() -> object:
        graph = StateGraph(State)
        graph.add_node("step", node)
        graph.add_edge(START, "step")
        graph.add_edge("step", END)
        return graph.compile()

    what = "langgraph StateGraph, 1 node, compiled"
    return Contender("langgraph", what, make, 400 // scale, 200 // scale)


def contenders(quick: bool) -> tuple[list[Contender], list[str]]:
    """llmagentos first, then whichever of the other frameworks import; notes for the rest."""
    scale = 5 if quick else 1
    found = [Contender("llmagentos", "Agent + 4 trivial modules", trivial_agent, 10_000, 1_000)]
    notes = []
    for key, factory in (("agno", _agno), ("langgraph", _langgraph)):
        try:
            found.append(factory(scale))
        except ImportError as err:
            notes.append(f"{key} skipped: not installed ({err.name}); pip install {key}")
    return found, notes


def creation(contender: Contender) -> Case:
    make, count = contender.make, contender.count

    def run() -> tuple[int, int]:
        start = clock()
        for _ in range(count):
            make()
        return clock() - start, count

    return run


def bytes_per_object(contender: Contender) -> float:
    """Traced memory increase while ``keep`` objects are created and kept, per object.

    Garbage (cycles included) is collected before reading, so only live objects count.
    """
    for _ in range(10):
        contender.make()  # fill one-time caches first
    kept: list[object] = [None] * contender.keep
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(contender.keep):
            kept[index] = contender.make()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / contender.keep


def run(quick: bool) -> BenchResult:
    found, notes = contenders(quick)
    repeats = 5 if quick else 21
    stats = interleave({c.key: creation(c) for c in found}, repeats=repeats, warmups=1)
    memory = {c.key: bytes_per_object(c) / 1024 for c in found}
    agno = stats.get("agno")
    rows = [
        [
            c.key,
            c.what,
            f"{stats[c.key].median / 1e3:.2f}",
            f"{stats[c.key].minimum / 1e3:.2f}",
            ratio_text(None if agno is None else stats[c.key].ratio_to(agno)),
            f"{memory[c.key]:.2f}",
            f"{c.count:,} / {c.keep:,}",
        ]
        for c in found
    ]
    ours_us = stats["llmagentos"].median / 1e3
    time_check = Check(
        name="instantiation_time",
        measured=f"{ours_us:.2f} us/agent",
        baseline="agno not installed" if agno is None else f"agno {agno.median / 1e3:.2f} us/agent",
        ratio=None if agno is None else stats["llmagentos"].ratio_to(agno),
        target=TIME_TARGET,
        direction="<=",
        note=f"Agno publishes ~{PUBLISHED_US:g} us for itself; absolute us are not asserted",
    )
    memory_check = Check(
        name="instantiation_memory",
        measured=f"{memory['llmagentos']:.2f} KiB/agent",
        baseline=f"Agno's published {PUBLISHED_KIB:g} KiB",
        ratio=memory["llmagentos"] / PUBLISHED_KIB,
        target=MEMORY_TARGET,
        direction="<=",
    )
    notes += [
        f"time target: llmagentos/agno <= {TIME_TARGET:g} in this run, the machine-independent "
        f"form of Agno's published ~{PUBLISHED_US:g} us (llmagentos here: {ours_us:.2f} us)",
        f"memory target: <= {PUBLISHED_KIB:g} KiB/agent (tracemalloc, objects kept alive)",
    ]
    data: dict[str, Any] = {
        c.key: {"what": c.what, "count": c.count, "keep": c.keep, "kib_per_object": memory[c.key]}
        | stats[c.key].to_dict()
        for c in found
    }
    return BenchResult(
        name=NAME,
        title=f"instantiation: {repeats} repeats (times include creating the modules)",
        columns=[
            "framework",
            "what is created",
            "median us",
            "min us",
            "vs agno",
            "KiB",
            "created/kept",
        ],
        rows=rows,
        checks=[time_check, memory_check],
        params={"repeats": repeats, "published_us": PUBLISHED_US, "published_kib": PUBLISHED_KIB},
        data=data,
        notes=notes,
        label_columns=2,
    )
