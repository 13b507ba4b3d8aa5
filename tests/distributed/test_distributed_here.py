"""What needs no Ray cluster: merging, pickling checks, errors, intervals."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

from llmagentos.distributed import NotSerializable, check_serializable
from llmagentos.distributed.cluster import ClusterUnreachable, connect, parse_address
from llmagentos.distributed.merge import _merge_table
from llmagentos.distributed.population import spread, t975
from llmagentos.exceptions import ConfigError, MissingExtraError
from llmagentos.llm import FunctionModel, Message, ModelRequest
from llmagentos.rl.qtable import QTable


def table(values: list[list[float]], visits: list[list[int]]) -> QTable:
    q = QTable(len(values[0]), len(values))
    q.rows, q.visits = [list(r) for r in values], [list(v) for v in visits]
    return q


def test_a_merge_weights_each_copy_by_the_visits_it_added() -> None:
    base = table([[1.0, 0.0]], [[2, 0]])
    a = table([[3.0, 5.0]], [[3, 1]])  # added 1 visit to action 0, 1 to action 1
    b = table([[6.0, 0.0]], [[5, 0]])  # added 3 visits to action 0, none to action 1
    merged = _merge_table(base, [a, b])
    assert merged.rows == [[(1 * 3.0 + 3 * 6.0) / 4, 5.0]]
    assert merged.visits == [[6, 1]]
    unchanged = _merge_table(base, [base, base])
    assert unchanged.rows == base.rows and unchanged.visits == base.visits


def test_growing_tables_merge_the_states_each_copy_added() -> None:
    base = QTable(2)
    a, b = QTable(2), QTable(2)
    a.update("x", 0, 1.0, 0.5)
    b.update("y", 1, 2.0, 0.5)
    merged = _merge_table(base, [a, b])
    assert list(merged.states()) == ["x", "y"]
    assert merged["x", 0] == 0.5 and merged["y", 1] == 1.0


class Holder:
    def __init__(self) -> None:
        self.settings = {"ok": 1, "inner": [1, threading.Lock()]}


def test_what_will_not_pickle_is_named_by_its_path() -> None:
    with pytest.raises(NotSerializable) as caught:
        check_serializable(Holder(), "the planning module Holder", path="planning")
    assert caught.value.path == "planning.settings['inner'][1]"
    assert "lock" in caught.value.reason and "the planning module Holder" in str(caught.value)
    assert check_serializable({"fine": [1, 2]}, "a dict")


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError) as caught:
        connect()
    assert "llmagentos[ray]" in str(caught.value)


def test_an_unreachable_address_fails_within_its_timeout() -> None:
    pytest.importorskip("ray")
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable) as caught:
        connect("127.0.0.1:1", timeout=1.5)
    assert time.monotonic() - started < 5
    assert caught.value.address == "127.0.0.1:1"


@pytest.mark.parametrize("address", ["nohost", "host:", "host:99999", ":80", "a:b"])
def test_a_malformed_address_is_refused(address: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_address(address)
    assert caught.value.field == "address"


def test_intervals_use_student_t() -> None:
    assert t975(1) == 12.706 and t975(30) == 2.042
    assert abs(t975(1000) - 1.962) < 0.001
    mean, half = spread([1.0, 2.0, 3.0]) or (0, 0)
    assert mean == 2.0 and abs(half - 4.303 * 1.0 / 3**0.5) < 1e-9
    assert spread([]) is None and spread([5.0]) == (5.0, 0.0)


def test_a_population_refuses_bad_settings(tmp_path: Any) -> None:
    from llmagentos.config import load_config
    from llmagentos.distributed.population import run_population, seed_population

    config = load_config("examples/configs/taxi.toml")
    with pytest.raises(ConfigError) as caught:
        seed_population(config, 0)
    assert caught.value.field == "seeds"
    with pytest.raises(ConfigError) as caught:
        run_population([config, config], backend="local")
    assert caught.value.field == "output.dir"
    with pytest.raises(ConfigError) as caught:
        run_population([config], backend="dask")
    assert caught.value.field == "backend"


def test_a_kernel_handle_is_sent_by_its_id_and_made_again_on_arrival() -> None:
    import pickle

    from llmagentos.distributed.pickling import dumps
    from llmagentos.kernel.default import agent_model, kernel, route_models

    handle = agent_model("openai:gpt-test", agent="sender", token_budget=500)
    again = pickle.loads(dumps({"model": handle}))["model"]
    assert again is not handle and again.inner.scheduler is kernel()  # no lock was copied
    assert again.inner.agent == "sender" and again.inner.backend == "openai:gpt-test"
    assert kernel().state()["agents"]["sender"]["token_budget"] == 500

    made: list[tuple[str, dict[str, Any]]] = []

    def route(model: str, **who: Any) -> Any:
        made.append((model, who))
        return FunctionModel(lambda request: "routed")

    route_models(route)  # what a Ray worker does before it unpickles an agent
    try:
        there = pickle.loads(dumps(handle))
    finally:
        route_models(None)
    assert there.request(ModelRequest(messages=(Message.user("hi"),))).text == "routed"
    assert made == [("openai:gpt-test", {"agent": "sender", "priority": 0, "weight": 1.0,
                                         "token_budget": 500})]  # fmt: skip


def test_errors_cross_processes_whole() -> None:
    import pickle

    from llmagentos.exceptions import BudgetExceeded, ModelTimeoutError

    for error in (
        BudgetExceeded("a", "tokens", 10, 12),
        ModelTimeoutError("late", model="m"),
        NotSerializable("the module", "planning.model._lock", "TypeError: no"),
        ClusterUnreachable("127.0.0.1:1", 1.5, "refused"),
        ConfigError("agent.alpha", "must be > 0"),
    ):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
        assert vars(back) == vars(error)
