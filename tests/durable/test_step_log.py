"""The steps log: records read back as their JSON rows did, torn tails, damage, modes.

A step's record is logged as msgpack data (one store per step into a mapped file);
what a reader gets must be exactly what the JSON rows of ``llmagentos.journal/2``
gave. A tail cut short by a kill is dropped and zeroed by the next writer; damage
before intact steps, another run's log, a log without its journal and a wrong mode
name are refused with typed errors naming what is wrong.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import json
import marshal
import math
import shutil
import sqlite3
import struct
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from pydantic import BaseModel

from llmagentos import Agent
from llmagentos._json import jsonable
from llmagentos.cli.main import main
from llmagentos.config import parse_config
from llmagentos.durable import DurableRunner, Journal, current_scope, records, run_durable, steplog
from llmagentos.durable.records import pack_data, pack_record, pack_step, unpack
from llmagentos.durable.steplog import SYNC_STEPS, StepLog, log_path
from llmagentos.exceptions import ConfigError, JournalError
from llmagentos.llm.types import ToolCall
from llmagentos.modules import ExecutionModule, LearningModule, PerceptionModule, PlanningModule
from llmagentos.modules.base import run_sync
from llmagentos.rl import EpsilonGreedySelector, QLearning, QTable
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.gate import ToolGate
from llmagentos.types import Decision, Outcome, StepRecord

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=jsonable)


def json_row(record: StepRecord) -> str:
    """How llmagentos.journal/2 wrote a step (the runner's encoder, verbatim)."""
    data = {
        "episode": record.episode, "step": record.step,
        "observation": record.observation, "features": record.features,
        "action": record.action, "reason": record.reason, "scores": record.scores,
        "reward": record.reward, "next_observation": record.next_observation,
        "terminated": record.terminated, "truncated": record.truncated,
        "info": record.info, "learning": record.learning, "training": record.training,
    }  # fmt: skip
    if record.details is not None:
        data["details"] = record.details
    try:
        return _ENCODER.encode(data)
    except TypeError:
        return _ENCODER.encode(jsonable(data))


class Colour(enum.IntEnum):
    RED = 1


class Size(enum.Enum):
    BIG = "big"


class Name(str):
    pass


@dataclasses.dataclass
class Point:
    x: float
    y: tuple[int, int]


class Reply(BaseModel):
    text: str
    score: float


class _Items(list[Any]):
    pass


class _Table(dict[Any, Any]):
    pass


def _nested(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth):
        value = [value]
    return value


def _record(**changes: Any) -> StepRecord:
    base: dict[str, Any] = {
        "episode": 3, "step": 7, "observation": 12, "features": 12, "action": 2,
        "reason": "explore", "scores": [0.5, -1.0], "reward": -1.0, "next_observation": 13,
        "terminated": False, "truncated": False, "info": {"prob": 1.0}, "learning": None,
        "training": True,
    }  # fmt: skip
    return StepRecord(**{**base, **changes})


CASES = {
    "taxi": _record(
        info={"prob": 1.0, "action_mask": np.array([1, 1, 0, 0, 1, 0], dtype=np.int8)},
        learning={"state": 12, "target": -1.0, "td_error": -0.9, "alpha": 0.1},
    ),
    "numpy": _record(
        observation=np.array([[0.25, -1.5], [3.0, 1e-300]], dtype=np.float32),
        features=np.arange(4),
        action=np.int64(3),
        reward=np.float64(-0.5),
        terminated=np.bool_(True),
        scores=np.array([np.nan, 1.0]),
        next_observation=np.array([np.inf, 2.0]),
        info={"n": np.uint8(7), "f": np.float32(0.1)},
    ),
    "non-finite": _record(reward=math.nan, scores=[math.inf, -math.inf, -0.0], info={"x": 1e308}),
    "tuples": _record(observation=(1, (2, 3)), action=(0, 1), info={"pair": (1.5, "a")}),
    "keys": _record(info={7: "int", 2.5: "float", True: "bool", None: "none", math.nan: "nan"}),
    "subclasses": _record(
        reason=Name("because"), action=Colour.RED, info={Name("k"): Colour.RED, "s": Size.BIG}
    ),
    "objects": _record(
        observation=Point(1.0, (2, 3)), info={"reply": Reply(text="hi", score=0.5), "s": {3, 1}}
    ),
    "details": _record(details={"source": "q", "q_values": [0.1, np.float32(0.2)], "n": None}),
    "tuple-keys": _record(info={(1, 2): "pair", "x": math.nan}),  # the JSON path's fallback
    "unicode": _record(reason="é ✓ \u202e 𝄞", info={"ключ": "значение"}),
    "nested": _record(observation={"grid": [[1, 2], [3, 4]], "pos": {"x": 1, "y": [0.5]}}),
    # What msgpack holds that JSON has no word for, or cannot hold itself.
    "bytes": _record(
        observation=b"\x00obs\xff",
        info={"raw": b"\x01", "array": bytearray(b"ab"), "view": memoryview(b"xyz")},
    ),
    "bytes-keys": _record(info={b"k": 1, "x": math.nan, True: 2, 3: (4,)}),  # the fallback
    "numpy-keys": _record(info={np.int64(3): "i", np.bool_(True): "b", "x": 1}),  # fallback
    "float-subclass-keys": _record(info={np.float64(0.5): "f", Colour.RED: "e", 2: 1.5}),
    "big-ints": _record(observation=2**70, info={"neg": -(2**64), "ok": 2**63 - 1}),
    "containers": _record(
        info={"od": collections.OrderedDict(b=1, a=2), "ul": _Items([1, (2, 3)])},
        learning=_Table({4: 0.5, "s": np.float32(2.0)}),
    ),
    "surrogates": _record(reason="lone \ud800", info={"\udfff": "key", "ok": "\U0001d11e"}),
    "deep": _record(observation=_nested(200)),
    "float-arrays": _record(scores=np.array([0.5, -1.0]), info={"m": np.array([[np.inf]])}),
    "msgpack-types": _record(info={"ext": msgpack.ExtType(5, b"x")}),
    # As keys, msgpack's own types are text, as any key JSON refuses (the fallback).
    "msgpack-keys": _record(info={msgpack.ExtType(5, b"x"): 1, msgpack.Timestamp(1): 2}),
    # An ExtType given code -1 (the Timestamp's) past its constructor's check: packed as
    # it is, it read back as a Timestamp.
    "ext-minus-one": _record(info={"ext": msgpack.ExtType._make((-1, b"\0" * 4))}),
    # Bytes that look like a packed Timestamp's (a float's d4 ff, a bin's d7 ff ...):
    # the general way, which reads back the same.
    "timestamp-like": _record(
        scores=[float.fromhex("0x1.4ffp-2")], info={"raw": b"\xd7\xff" + bytes(8)}
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_record_reads_back_as_its_json_row(name):
    record = CASES[name]
    n, segment, read = unpack(pack_record(41, "train", record))
    assert (n, segment) == (41, "train")
    # The same text: the same keys in the same order, the same numbers, NaN as NaN.
    assert _ENCODER.encode(read) == json_row(record)
    assert json.dumps(read) == json.dumps(json.loads(json_row(record)))


class _Stepped:
    """What pack_step reads of an Agent: its last step, as Agent keeps it."""

    def __init__(self, record: StepRecord, *, decided: bool = True, outcome: bool = True):
        r = record
        decision = Decision(r.action, r.reason, r.scores, r.details) if decided else None
        result = Outcome(r.next_observation, r.reward, r.terminated, r.truncated, r.info)
        self.episode, self.step_index = r.episode, r.step + 1
        self._stepped = (r.observation, r.features, r.action, decision)
        self._returned = (r.next_observation, r.reward)
        self._outcome = result if outcome else None
        self._report = r.learning
        self._mode_step, self._mode_before, self._training = None, not r.training, r.training


@pytest.mark.parametrize("name", list(CASES))
def test_the_runner_s_fast_path_packs_what_the_record_does(name):
    record = CASES[name]
    no_decision = dataclasses.replace(record, reason=None, scores=None, details=None)
    no_outcome = dataclasses.replace(record, terminated=False, truncated=False, info={})
    for stepped, expected in (
        (_Stepped(record), record),
        (_Stepped(record, decided=False), no_decision),
        (_Stepped(record, outcome=False), no_outcome),
    ):
        n, segment, packed = unpack(pack_step(9, "eval", stepped))  # type: ignore[arg-type]
        assert (n, segment) == (9, "eval")
        assert _ENCODER.encode(packed) == json_row(expected)


def test_the_fast_path_reads_a_real_agent_as_its_record_does():
    agent = _taxi()
    observation = agent.reset(seed=3)
    for step in range(40):
        if step == 20:
            agent.eval()  # the record keeps the mode its step ran in
        observation, _ = agent.step(agent.act(observation))
        record = agent.last_record
        assert record is not None
        assert unpack(pack_step(step, "run", agent)) == unpack(pack_record(step, "run", record))
        if agent.terminated or agent.truncated:
            observation = agent.reset()


@pytest.mark.parametrize(
    "value",
    [
        object(), {1, object()}, (1, object()), datetime.datetime(2026, 1, 1),
        # msgpack's own, which its packer takes without the fast path's hook: 32, 64
        # and 96-bit forms, and in a list.
        msgpack.Timestamp(1), msgpack.Timestamp(1, 5), msgpack.Timestamp(-1),
        [msgpack.ExtType(5, b"x"), msgpack.Timestamp(2**40)],
    ],
    ids=lambda value: type(value).__name__,
)  # fmt: skip
def test_a_record_json_refuses_is_refused_as_before(value):
    record = _record(info={"x": value})
    with pytest.raises(TypeError, match="JSON"):
        json_row(record)
    with pytest.raises(TypeError, match="JSON"):
        pack_record(0, "run", record)
    with pytest.raises(TypeError, match="JSON"):
        pack_step(0, "run", _Stepped(record))  # type: ignore[arg-type]


def test_a_record_that_contains_itself_is_refused():
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        pack_step(0, "run", _Stepped(_record(info={"loop": loop})))  # type: ignore[arg-type]


def test_a_taxi_step_is_packed_by_msgpack_alone(monkeypatch):
    """The runner's fast path: a Taxi record never goes the general (Python) way."""

    def general(*args: object) -> bytes:
        raise AssertionError("the general path ran")

    monkeypatch.setattr(records, "pack_fields", general)
    body = records.step_packer()(9, "run", _Stepped(CASES["taxi"]))  # type: ignore[arg-type]
    assert body[0] == 0xDC  # a msgpack array (16 items)
    assert unpack(body)[2]["info"]["action_mask"] == [1, 1, 0, 0, 1, 0]


def test_a_steps_1_frame_reads_back_as_before():
    """Logs written before msgpack hold marshal frames: read, and appended to."""
    record = CASES["taxi"]
    values = json.loads(json_row(record))
    body = marshal.dumps((4, "run", *values.values()), 2)
    assert unpack(body) == (4, "run", values)
    with pytest.raises(ValueError, match="a value of type set"):
        unpack(marshal.dumps((4, "run", *[{1}] * 14), 2))


def test_any_json_able_data_reads_back_as_json_gives_it():
    data = {"a": (1, 2), 3: np.float64(0.5), "m": Reply(text="x", score=1.0)}
    assert unpack(pack_data(5, "run", data))[2] == json.loads(json.dumps(jsonable(data)))


class _Noting(ExecutionModule):
    """Taxi with a tool call every 7th step; the tool notes the steps not yet synced."""

    def __init__(self, unsynced: list[int]) -> None:
        super().__init__("Taxi-v4")
        self.count = 0

        @tool(namespace="log")
        def note(text: str) -> str:
            """Note something."""
            scope = current_scope()
            assert scope is not None and scope.journal is not None
            unsynced.append(scope.journal._log._unsynced)
            return text

        self.gate = ToolGate(ToolRegistry([note]))

    def perform(self, action: Any) -> Outcome:
        outcome = super().perform(action)
        self.count += 1
        if self.count % 7 == 0:
            call = ToolCall(id="n", name="log.note", arguments=json.dumps({"text": "x"}))
            run_sync(self.gate.run_calls([call]))
        return outcome


def _taxi(unsynced: list[int] | None = None) -> Agent:
    q = QTable(6, 500)
    execution = ExecutionModule("Taxi-v4") if unsynced is None else _Noting(unsynced)
    return Agent(
        planning_module=PlanningModule(EpsilonGreedySelector(q, epsilon=0.2, seed=0)),
        execution_module=execution,
        learning_module=LearningModule(QLearning(q, alpha=0.5, gamma=0.95)),
        name="taxi",
    )


@dataclasses.dataclass
class _Ran:
    replayed: int
    live: int


def _run(path: Path, episodes: int) -> _Ran:
    """``episodes`` Taxi episodes on the journal at ``path`` (more later: it resumes)."""
    runner = DurableRunner(path, agent="taxi")
    try:
        runner.run(_taxi(), episodes, seed=0, max_steps=40)
        runner.finish()
        return _Ran(min(runner.n, runner.recorded_steps), runner.live_steps)
    finally:
        runner.close()


def test_a_reader_sees_the_steps_of_a_running_journal(tmp_path):
    path = tmp_path / "run.db"
    seen: list[tuple[int, int]] = []

    def look(episode: Any) -> None:
        with Journal(path, create=False) as reader:
            seen.append((reader.step_count(), len(list(reader.steps()))))

    runner = DurableRunner(path, agent="taxi")
    result = runner.run(_taxi(), 3, seed=0, max_steps=40, on_episode=look)
    runner.close()
    lengths = [e.length for e in result.episodes]
    totals = [sum(lengths[: i + 1]) for i in range(3)]
    assert seen == [(t, t) for t in totals]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.db", "run.db-steps"]


class _Carrying:
    """What puts ``value`` into the record of step ``at`` of a Taxi run, in ``place``."""

    def __init__(self, value: Any, place: str, at: int) -> None:
        self.value, self.place, self.at = value, place, at
        self.calls = 0

    def now(self, *places: str) -> bool:
        """Whether this call, a module's for one of ``places``, is step ``at``'s."""
        if self.place not in places:
            return False
        self.calls += 1
        return self.calls == self.at + 1


class _CarryingExecution(ExecutionModule):
    def __init__(self, carry: _Carrying) -> None:
        super().__init__("Taxi-v4")
        self.carry = carry

    def perform(self, action: Any) -> Outcome:
        outcome = super().perform(action)
        carry = self.carry
        if carry.now("info", "key"):
            outcome.info["carried"] = carry.value
            if carry.place == "key":
                outcome.info[carry.value] = "as a key"
        if carry.now("observation"):
            observation = {"state": outcome.observation, "carried": carry.value}
            outcome = dataclasses.replace(outcome, observation=observation)
        return outcome


class _State(PerceptionModule):
    """Taxi's state, also from an observation that carries something."""

    def perceive(self, observation: Any) -> Any:
        return observation["state"] if isinstance(observation, dict) else observation


class _CarryingPlanning(PlanningModule):
    def __init__(self, carry: _Carrying, selector: EpsilonGreedySelector) -> None:
        super().__init__(selector)
        self.carry = carry

    def decide(self, features: Any) -> Decision:
        decision = super().decide(features)
        if self.carry.now("details"):
            decision = dataclasses.replace(decision, details={"carried": self.carry.value})
        return decision


class _CarryingLearning(LearningModule):
    def __init__(self, carry: _Carrying, learner: QLearning) -> None:
        super().__init__(learner)
        self.carry = carry

    def update(self, transition: Any) -> dict[str, Any] | None:
        report = super().update(transition)
        if self.carry.now("learning"):
            report = {**(report or {}), "carried": self.carry.value}
        return report


def _carrying(value: Any = None, place: str = "info", at: int = -1) -> Agent:
    """Taxi (as :func:`_taxi`) whose step ``at`` carries ``value`` in ``place``."""
    carry = _Carrying(value, place, at)
    q = QTable(6, 500)
    return Agent(
        perception_module=_State(),
        planning_module=_CarryingPlanning(carry, EpsilonGreedySelector(q, epsilon=0.2, seed=0)),
        execution_module=_CarryingExecution(carry),
        learning_module=_CarryingLearning(carry, QLearning(q, alpha=0.5, gamma=0.95)),
        name="taxi",
    )


_STAMPS = {
    "timestamp 32-bit": msgpack.Timestamp(1),
    "timestamp 64-bit": msgpack.Timestamp(1, 5),
    "timestamp 96-bit": msgpack.Timestamp(-1),
    "with an ExtType": [msgpack.ExtType(5, b"x"), {"at": msgpack.Timestamp(2**34)}],
}


@pytest.mark.parametrize("place", ["info", "learning", "details", "observation"])
@pytest.mark.parametrize("stamp", list(_STAMPS))
def test_a_msgpack_timestamp_in_a_step_is_refused_before_it_is_logged(tmp_path, stamp, place):
    """msgpack's packer takes a Timestamp as it is (no hook sees it), but the reader
    cannot give it back as JSON data: a record with one is refused when it is written,
    with the TypeError a datetime gets; the steps before it are intact, and a resume
    replays them and goes on."""
    path = tmp_path / "run.db"
    runner = DurableRunner(path, agent="taxi")
    with pytest.raises(TypeError, match="Timestamp is not JSON-serializable"):
        runner.run(_carrying(_STAMPS[stamp], place, at=3), 1, seed=0, max_steps=10)
    runner.close()
    with Journal(path, create=False) as reader:
        assert [r["step"] for r in reader.steps()] == [0, 1, 2]  # not step 3, not torn
    runner = DurableRunner(path, agent="taxi")
    try:
        runner.run(_carrying(), 1, seed=0, max_steps=10)
        runner.finish()
        assert (runner.recorded_steps, runner.live_steps) == (3, 7)
    finally:
        runner.close()
    with Journal(path, create=False) as reader:
        assert [r["step"] for r in reader.steps()] == list(range(10))


@pytest.mark.parametrize("place", ["info", "key", "learning", "details", "observation"])
def test_a_msgpack_ext_type_in_a_step_reads_back_as_its_json_row(tmp_path, place):
    """An ExtType is a named tuple: JSON's encoder writes ``[code, data]``, the data as
    base64 text, and its text as a key. Logged by the fast path as msgpack's ext type,
    it reads back so, and a resume replays the steps."""
    path = tmp_path / "run.db"
    agent = _carrying(msgpack.ExtType(5, b"x"), place, at=2)
    rows: list[str] = []
    agent.listeners.append(lambda record: rows.append(json_row(record)))
    runner = DurableRunner(path, agent="taxi")
    try:
        runner.run(agent, 1, seed=0, max_steps=5)
    finally:
        runner.close()
    with Journal(path, create=False) as reader:
        logged = list(reader.steps())
    assert [_ENCODER.encode(r) for r in logged] == rows
    carried = logged[2][{"observation": "next_observation", "key": "info"}.get(place, place)]
    assert carried["carried"] == [5, "eA=="]
    if place == "key":
        assert carried["ExtType(code=5, data=b'x')"] == "as a key"
    runner = DurableRunner(path, agent="taxi")
    try:
        runner.run(_carrying(msgpack.ExtType(5, b"x"), place, at=2), 2, seed=0, max_steps=5)
        runner.finish()
        assert (runner.recorded_steps, runner.live_steps) == (5, 5)
    finally:
        runner.close()
    with Journal(path, create=False) as reader:
        assert [_ENCODER.encode(r) for r in reader.steps()][:5] == rows


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00\x00\x00\x00" + b"\xe9\x03\x00\x00\x00u" * 3,  # a body stored, not its length
        b"\x90\x01\x00\x00\x12\x34",  # a length, then the body cut short (a power loss)
    ],
    ids=["kill", "cut"],
)
def test_a_torn_tail_is_dropped_and_the_next_writer_zeroes_it(tmp_path, tail):
    path = tmp_path / "run.db"
    assert _run(path, 2).live
    with Journal(path) as journal:
        steps = list(journal.steps())
    log = log_path(path)
    data = log.read_bytes()
    log.write_bytes(data + tail)
    with Journal(path, create=False) as journal:
        assert list(journal.steps()) == steps
    again = _run(path, 4)
    assert again.replayed == len(steps) and again.live > 0
    with Journal(path, create=False) as journal:
        assert list(journal.steps())[: len(steps)] == steps
        assert journal.step_count() == len(steps) + again.live
        (repair,) = journal.audit_trail(("steps_log_repaired",))
    assert repair.detail == {"dropped_bytes": len(tail.rstrip(b"\0"))}
    assert repair.n == len(steps)


def test_a_truncated_log_keeps_its_whole_steps(tmp_path):
    path = tmp_path / "run.db"
    assert _run(path, 2).live
    log = log_path(path)
    data = log.read_bytes()
    with Journal(path) as journal:
        total = journal.step_count()
    log.write_bytes(data[:-5])  # the last step cut short
    with Journal(path, create=False) as journal:
        assert journal.step_count() == total - 1
    log.write_bytes(data[:6])  # not even the header is whole
    with pytest.raises(JournalError, match=r"run\.db-steps is not a steps log"):
        Journal(path, create=False).step_count()


def _frame_offsets(data: bytes) -> list[int]:
    """Where each frame of a steps log starts (the header's first)."""
    offsets, offset = [], 0
    while offset + 4 <= len(data):
        (word,) = struct.unpack_from("<I", data, offset)
        if not word:
            break
        offsets.append(offset)
        offset += 4 + (4 if word >> 31 else 0) + (word & 0x7FFFFFFF)
    return offsets


@pytest.mark.parametrize("damage", ["length", "body"])
def test_a_damaged_step_before_intact_ones_is_refused_before_anything_is_written(tmp_path, damage):
    path = tmp_path / "run.db"
    assert _run(path, 2).live
    log = log_path(path)
    data = bytearray(log.read_bytes())
    middle = _frame_offsets(bytes(data))[len(_frame_offsets(bytes(data))) // 2]
    if damage == "length":  # a length running past the end of the file
        struct.pack_into("<I", data, middle, 0x0FFFFFFF)
        message = r"run\.db-steps: the steps log is damaged at byte"
    else:  # a body that is not a record any more
        data[middle + 4 : middle + 12] = b"\xff" * 8
        message = r"step \d+ in .*run\.db-steps is corrupt"
    log.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=message):
        list(Journal(path, create=False).steps())
    before = log.read_bytes()
    with pytest.raises(JournalError, match=message):
        _run(path, 4)
    assert log.read_bytes() == before
    with Journal(path, create=False) as journal:
        assert journal.status().state == "completed"
    assert main(["runs", "audit", str(tmp_path)]) == 2


def test_a_power_loss_frame_carries_a_checksum(tmp_path):
    path = tmp_path / "run.db"
    runner = DurableRunner(path, agent="taxi", durability="power_loss")
    runner.run(_taxi(), 1, seed=0, max_steps=40)
    runner.close()
    log = log_path(path)
    data = bytearray(log.read_bytes())
    offsets = _frame_offsets(bytes(data))
    assert all(struct.unpack_from("<I", data, o)[0] >> 31 for o in offsets)  # all checked
    data[offsets[5] + 20] ^= 0x01  # one bit of step 4's record
    log.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=r"damaged at byte \d+ \(step 4\)"):
        Journal(path, create=False).step_count()


def test_a_frame_whose_step_is_out_of_place_is_corrupt(tmp_path):
    path = tmp_path / "run.db"
    journal = Journal(path)
    journal.append_step(0, "run", 0, 0, {"episode": 0})
    journal.close()
    log = StepLog(log_path(path))
    with Journal(path) as reader:
        log.open(run_id=reader.run_id, base=0)
    log.next = 5  # a writer that skipped steps 1-4
    log.append(5, pack_data(5, "run", {"episode": 0}))
    log.close()
    with (
        Journal(path, create=False) as reader,
        pytest.raises(JournalError, match=r"step 1 in .*run\.db-steps is corrupt"),
    ):
        list(reader.steps())


_RECORD = [1, "run", 0, 0, 3, 3, 1, "why", None, -1.0, 4, False, False, {}, None, True]


def _in_info(raw: bytes) -> bytes:
    """A record frame whose ``info`` is ``{"t": <raw msgpack bytes>}``."""
    body = msgpack.packb([*_RECORD[:13], {"t": 0}, None, True])
    assert body.count(b"\x81\xa1t\x00") == 1
    return body.replace(b"\x81\xa1t\x00", b"\x81\xa1t" + raw)


HOSTILE = {
    "list key": msgpack.packb([1, "run", None, {"k": 1}])[:-3] + b"\x81\x91\x01\x02",
    "timestamp": msgpack.packb([*_RECORD[:13], {"t": msgpack.Timestamp(1)}, None, True]),
    "bin in data": msgpack.packb([1, "run", None, {"raw": b"\x00"}]),
    "nested deep": msgpack.packb([1, "run", None, 0])[:-1] + b"\x91" * 5000 + b"\x00",
    "not an array": msgpack.packb({"n": 1}),
    "trailing bytes": msgpack.packb(_RECORD) + b"\x00",
    "huge declared array": b"\xdd\xff\xff\xff\xff",
    "segment not a string": msgpack.packb([1, 7, None, 0]),
    # msgpack's ext types: a Timestamp no writer logs (a key's is its text), codes it
    # reserves, an ext in data that is JSON-able, an ext longer than the frame.
    "timestamp key": msgpack.packb([*_RECORD[:13], {msgpack.Timestamp(1): 1}, None, True]),
    "timestamp 96-bit in details": msgpack.packb([*_RECORD, {"t": msgpack.Timestamp(-1)}]),
    "timestamp bad nanoseconds": _in_info(b"\xc7\x0c\xff" + b"\xff" * 4 + bytes(8)),
    "ext -1 of 1 byte": _in_info(b"\xd4\xff\x00"),
    "ext reserved code": _in_info(b"\xd4\x80\x00"),
    "ext in data": msgpack.packb([1, "run", None, {"e": msgpack.ExtType(5, b"x")}]),
    "ext past the end": _in_info(b"\xc9\x7f\xff\xff\xff\x05"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_crafted_msgpack_frame_is_corrupt_naming_its_step(tmp_path, name):
    """A frame written by hand into the log, not by the runner: refused when read, with
    the journal's typed error, never an exception of the decoder's own."""
    path = tmp_path / "run.db"
    journal = Journal(path)
    journal.append_step(0, "run", 0, 0, {"episode": 0})
    journal.close()
    log = StepLog(log_path(path))
    with Journal(path) as reader:
        log.open(run_id=reader.run_id, base=0)
    log.append(1, HOSTILE[name])
    log.close()
    with (
        Journal(path, create=False) as reader,
        pytest.raises(JournalError, match=r"step 1 in .*run\.db-steps is corrupt"),
    ):
        list(reader.steps())


def test_another_runs_log_and_a_log_without_its_journal_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _run(tmp_path / "a" / "run.db", 1).live
    assert _run(tmp_path / "b" / "run.db", 1).live
    shutil.copy(log_path(tmp_path / "a" / "run.db"), log_path(tmp_path / "b" / "run.db"))
    with pytest.raises(JournalError, match=r"run_id .* is not the journal's .*another run"):
        list(Journal(tmp_path / "b" / "run.db", create=False).steps())
    with pytest.raises(JournalError, match="another run"):
        _run(tmp_path / "b" / "run.db", 1)

    (tmp_path / "c").mkdir()
    shutil.copy(log_path(tmp_path / "a" / "run.db"), log_path(tmp_path / "c" / "run.db"))
    with pytest.raises(JournalError, match="a steps log without its journal"):
        _run(tmp_path / "c" / "run.db", 1)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["run.db-steps"]

    log_path(tmp_path / "a" / "run.db").unlink()
    with pytest.raises(JournalError, match=r"its steps log .* is missing"):
        Journal(tmp_path / "a" / "run.db", create=False).step_count()


def test_a_wrong_durability_mode_is_a_config_error_naming_the_field(tmp_path, capsys):
    with pytest.raises(ConfigError, match="durability: must be one of 'process', 'power_loss'"):
        DurableRunner(tmp_path / "run.db", durability="disk")
    with pytest.raises(ConfigError) as caught:
        Journal(tmp_path / "run.db", durability="fsync")
    assert caught.value.field == "durability"
    assert not (tmp_path / "run.db").exists()
    with Journal(tmp_path / "run.db") as journal, pytest.raises(ConfigError, match="opened"):
        DurableRunner(journal, durability="power_loss")
    with pytest.raises(ConfigError) as caught:
        parse_config({"env": {"id": "Taxi-v4"}, "output": {"durability": "always"}})
    assert caught.value.field == "output.durability"
    config = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"
    code = main(["run", str(config), "-o", str(tmp_path / "out"), "--durability", "nvme", "-q"])
    assert code == 2 and "durability" in capsys.readouterr().err


def test_power_loss_mode_syncs_before_every_call_and_in_groups(tmp_path, monkeypatch):
    syncs: list[int] = []
    real_sync = StepLog.sync

    def counting(self: StepLog) -> None:
        if self._unsynced:
            syncs.append(self._unsynced)
        real_sync(self)

    monkeypatch.setattr(StepLog, "sync", counting)
    unsynced: list[int] = []
    agent = _taxi(unsynced)
    result = run_durable(
        agent, tmp_path / "run.db", 6, seed=0, max_steps=100, durability="power_loss"
    )
    steps = sum(e.length for e in result.run.episodes)
    assert result.completed and steps > SYNC_STEPS and len(unsynced) >= steps // 7
    assert set(unsynced) == {0}  # every call ran with the steps before it on disk
    assert sum(syncs) == steps and max(syncs) <= SYNC_STEPS  # every step synced, in groups

    syncs.clear()
    unsynced.clear()
    result = run_durable(_taxi(unsynced), tmp_path / "p.db", 2, seed=0, max_steps=100)
    assert result.completed and unsynced and not syncs  # process mode: no sync at all
    assert max(unsynced) == 0  # (nothing is counted as waiting for one either)


def test_a_journal_2_keeps_its_steps_and_goes_on_in_the_log(tmp_path):
    path = tmp_path / "run.db"
    assert _run(path, 2).live
    with Journal(path) as journal:
        steps = list(journal.steps())
    # Make it a journal/2: its steps as JSON rows, no log.
    db = sqlite3.connect(path)
    db.executemany(
        "insert into steps values (?, 'run', ?, ?, ?)",
        [(n, r["episode"], r["step"], json.dumps(r)) for n, r in enumerate(steps)],
    )
    db.execute("update meta set value = 'llmagentos.journal/2' where key = 'format'")
    db.execute("delete from meta where key = 'steps_log'")
    db.commit()
    db.close()
    log_path(path).unlink()
    with Journal(path, create=False) as journal:
        assert list(journal.steps()) == steps
    again = _run(path, 4)
    assert again.replayed == len(steps) and again.live > 0
    with Journal(path, create=False) as journal:
        assert journal._meta("format") == "llmagentos.journal/3"
        assert list(journal.steps())[: len(steps)] == steps
        assert journal.step_count() == len(steps) + again.live
        assert journal.step(len(steps) - 1) == steps[-1]
        assert journal.step(len(steps)) is not None and journal.step(10**6) is None


def test_a_steps_1_log_keeps_its_marshal_steps_and_goes_on_in_msgpack(tmp_path):
    path = tmp_path / "run.db"
    assert _run(path, 2).live
    with Journal(path) as journal:
        steps, run_id = list(journal.steps()), journal.run_id
    # Rewrite the log as steps/1 wrote it: that header, a marshal body per step.
    header = json.dumps({"format": "llmagentos.steps/1", "run_id": run_id, "base": 0})
    frames = [steplog._frame(header.encode(), checked=True)]
    for n, record in enumerate(steps):
        frames.append(steplog._frame(marshal.dumps((n, "run", *record.values()), 2), checked=False))
    log_path(path).write_bytes(b"".join(word + rest for word, rest in frames))
    with Journal(path, create=False) as journal:
        assert list(journal.steps()) == steps
    again = _run(path, 4)
    assert again.replayed == len(steps) and again.live > 0
    data = log_path(path).read_bytes()
    bodies = steplog.parse(data, log_path(path), run_id=run_id, base=0).bodies
    assert {body[:1] for body in bodies[: len(steps)]} == {b"("}  # marshal
    assert {body[0] for body in bodies[len(steps) :]} == {0xDC}  # msgpack
    with Journal(path, create=False) as journal:
        assert list(journal.steps())[: len(steps)] == steps
        assert journal.step_count() == len(steps) + again.live


def test_the_cli_runs_and_resumes_in_the_mode_it_is_given(tmp_path, capsys):
    config = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"
    out = tmp_path / "out"
    args = ["run", str(config), "-o", str(out), "--train-episodes", "1", "--eval-episodes", "0"]
    assert main([*args, "--durability", "power_loss", "-q"]) == 0  # implies --durable
    data = log_path(out / "run.db").read_bytes()
    offsets = _frame_offsets(data)
    assert len(offsets) > 1 and all(struct.unpack_from("<I", data, o)[0] >> 31 for o in offsets)
    assert main(["runs", "resume", str(out), "--durability", "sometimes", "-q"]) == 2
    assert "--durability: must be one of 'process', 'power_loss'" in capsys.readouterr().err
    assert main(["runs", "resume", str(out), "--durability", "process", "-q"]) == 0
