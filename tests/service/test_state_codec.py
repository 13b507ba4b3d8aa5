"""A session's agent stored as JSON (the difference from a freshly built agent), loaded
without unpickling, equal to the agent that was saved in every value and every shared
reference; pickle only as a fallback, and never for an unsigned store."""

from __future__ import annotations

import collections
import json
import math
import pickle
from pathlib import Path
from typing import Any

import pytest

from llmagentos.build import BuiltAgent, build_agent
from llmagentos.config import load_config
from llmagentos.exceptions import ConfigError, SessionStateRefused, SessionStoreError
from llmagentos.service.state import JSON_TAG, PICKLE_TAG, StateCodec

ROOT = Path(__file__).resolve().parents[2]
TAXI = load_config(ROOT / "examples" / "configs" / "taxi.toml")
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, tuple, frozenset, range)


def same_state(a: Any, b: Any) -> None:
    """Assert two object graphs are equal in every value and type, and that their
    mutable objects are shared the same way (a one-to-one map between them)."""
    pairs: dict[int, int] = {}
    taken: dict[int, int] = {}
    keep: list[Any] = []

    def walk(x: Any, y: Any, where: str) -> None:
        assert type(x) is type(y), f"{where}: {type(x).__name__} != {type(y).__name__}"
        if isinstance(x, float) and math.isnan(x):
            assert math.isnan(y), where
            return
        if type(x) in (type(None), bool, int, float, complex, str, bytes, range):
            assert x == y, f"{where}: {x!r} != {y!r}"
            return
        if not isinstance(x, _IMMUTABLE):
            if id(x) in pairs:
                assert pairs[id(x)] == id(y), f"{where}: shared differently"
                return
            assert id(y) not in taken, f"{where}: shared differently"
            pairs[id(x)], taken[id(y)] = id(y), id(x)
            keep.extend((x, y))
        if isinstance(x, list | tuple | collections.deque):
            assert len(x) == len(y), where
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{where}[{i}]")
        elif isinstance(x, dict):
            assert list(x) == list(y), f"{where}: keys"
            for key in x:
                walk(x[key], y[key], f"{where}[{key!r}]")
        elif isinstance(x, set | frozenset):
            assert x == y, where
        elif type(x).__module__ == "numpy" or type(x).__module__.startswith("numpy."):
            assert pickle.dumps(x) == pickle.dumps(y), where
        elif type(x).__name__ == "Random":
            assert x.getstate() == y.getstate(), where
        elif type(x).__name__ == "method":
            assert x.__func__ is y.__func__, where
            walk(x.__self__, y.__self__, f"{where}.__self__")
        elif hasattr(x, "__dict__") or hasattr(type(x), "__slots__"):
            mine, theirs = _attrs(x), _attrs(y)
            assert list(mine) == list(theirs), f"{where}: attributes {list(mine)} {list(theirs)}"
            for attr in mine:
                walk(mine[attr], theirs[attr], f"{where}.{attr}")
        else:
            assert x is y, f"{where}: {type(x).__name__} not compared"

    walk(a, b, "built")


def _attrs(obj: Any) -> dict[str, Any]:
    found = {}
    for cls in type(obj).__mro__:
        for slot in cls.__dict__.get("__slots__", ()):
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                found[slot] = getattr(obj, slot)
    found.update(getattr(obj, "__dict__", {}))
    return found


def _factory() -> BuiltAgent:
    return build_agent(TAXI)


def _trained_mid_episode(factory: Any = None) -> BuiltAgent:
    built = (factory or _factory)()
    built.agent.run(4, seed=0, max_steps=60)
    observation = built.agent.reset(seed=11)
    for _ in range(9):
        observation, _ = built.agent.step(built.agent.act(observation))
        if built.agent.done:
            observation = built.agent.reset()
    return built


def _steps(built: BuiltAgent, n: int) -> list[Any]:
    agent, out = built.agent, []
    observation = agent._observation  # where the episode stands
    for _ in range(n):
        observation, reward = agent.step(agent.act(observation))
        out.append((observation, reward, agent.terminated, agent.truncated))
        if agent.done:
            observation = agent.reset()
    return out


def test_a_taxi_session_is_stored_as_json_and_loads_without_unpickling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codec = StateCodec(_factory, allow_pickle=False)  # no pickle at all: JSON must do
    assert codec.json
    live = _trained_mid_episode()
    data = codec.dumps(live)
    assert data[:1] == JSON_TAG
    document = json.loads(data[1:])
    assert document["format"].startswith("llmagentos.session-delta/")

    def no_unpickling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a JSON state was unpickled")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    back = codec.loads(data, _factory())
    monkeypatch.undo()
    same_state(live, back)  # every value, type and shared reference
    assert back.q_table is back.agent.modules[1].selector.q is back.agent.modules[3].optimizer.q
    assert sum(map(sum, back.q_table.visits)) == sum(map(sum, live.q_table.visits)) > 200
    # Both go on exactly alike: the environment, its generator and the agent's own.
    assert _steps(live, 40) == _steps(back, 40)


@pytest.mark.parametrize("config", ["cliffwalking.toml", "frozenlake.yaml", "taxi_sarsa.toml"])
def test_other_agents_come_back_exactly_too(config: str) -> None:
    loaded = load_config(ROOT / "examples" / "configs" / config)

    def factory() -> BuiltAgent:
        return build_agent(loaded)

    codec = StateCodec(factory, allow_pickle=False)
    live = _trained_mid_episode(factory)
    back = codec.loads(codec.dumps(live), factory())
    same_state(live, back)
    assert _steps(live, 30) == _steps(back, 30)


def test_a_fresh_session_differs_in_nothing() -> None:
    codec = StateCodec(_factory, allow_pickle=False)
    data = codec.dumps(_factory())
    assert json.loads(data[1:])["delta"] is None
    same_state(_factory(), codec.loads(data, _factory()))


def _with_deque() -> BuiltAgent:
    built = _factory()
    built.agent.modules[1].recent = collections.deque(maxlen=3)  # pickles itself its own way
    return built


def test_state_json_cannot_express_is_pickled_only_when_the_store_is_sealed() -> None:
    sealed = StateCodec(_with_deque, allow_pickle=True)
    assert not sealed.json and "deque" in (sealed.why_not_json or "")
    live = _with_deque()
    live.agent.run(1, seed=0, max_steps=20)
    data = sealed.dumps(live)
    assert data[:1] == PICKLE_TAG
    same_state(live, sealed.loads(data, _with_deque()))
    with pytest.raises(ConfigError, match="deque") as refused:
        StateCodec(_with_deque, allow_pickle=False)
    assert refused.value.field == "state_secret"
    # A JSON agent that later holds what JSON cannot express: pickled if sealed, else refused.
    unsigned = StateCodec(_factory, allow_pickle=False)
    grown = _with_deque()
    with pytest.raises(SessionStoreError, match="unsigned"):
        unsigned.dumps(grown)
    assert StateCodec(_factory, allow_pickle=True).dumps(grown)[:1] == PICKLE_TAG


@pytest.mark.parametrize(
    "delta",
    [
        {"o": {"agent": {"=": {"$": "obj", "#": 1, "c": "subprocess:Popen", "a": {}}}}},
        {"o": {"agent": {"=": {"$": "obj", "#": 1, "c": "os:system", "a": {}}}}},
        {"o": {"agent": {"=": {"$": "obj", "#": 1, "c": "builtins:object", "a": {}}}}},
        {"o": {"env": {"o": {"env": {"=": {"$": "gen", "#": 1, "v": {"bits": "os"}}}}}}},
        {
            "o": {
                "agent": {
                    "o": {
                        "_perceive": {
                            "=": {"$": "method", "#": 1, "f": "close", "s": {"$": "tuple", "v": []}}
                        }
                    }
                }
            }
        },
        {"o": {"q_table": {"o": {"rows": {"=": [{"$": "obj"}]}}}}},
        {"o": {"agent": {"l": [[99, {"=": 1}]]}}},
        ["not", "a", "delta"],
    ],
)
def test_a_stored_state_that_names_anything_else_is_refused(delta: Any) -> None:
    codec = StateCodec(_factory, allow_pickle=False)
    data = JSON_TAG + json.dumps({"format": "llmagentos.session-delta/1", "delta": delta}).encode()
    with pytest.raises(SessionStateRefused) as refused:
        codec.loads(data, _factory())
    assert refused.value.reason == "forged"


def test_unsigned_pickle_and_unknown_formats_are_never_loaded() -> None:
    codec = StateCodec(_factory, allow_pickle=False)
    with pytest.raises(SessionStateRefused) as refused:
        codec.loads(PICKLE_TAG + pickle.dumps(_factory()), _factory())
    assert refused.value.reason == "unsigned"
    with pytest.raises(SessionStateRefused):
        codec.loads(b"X{}", _factory())
    with pytest.raises(SessionStateRefused):
        codec.loads(JSON_TAG + b"{not json", _factory())
