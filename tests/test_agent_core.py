"""The Agent's core (llmagentos.agent_core): the compiled one and the Python one agree.

The suite runs on whichever core the install has (the compiled one, where a compiler
was found at install time); the last test runs the Agent's own test files again on the
Python core in a subprocess. The rest pins what the C code does by hand that Python
does by itself: arguments by name, exceptions passed through or chained, copies,
reference cycles, a module that changes the agent's paths mid-call.
"""

from __future__ import annotations

import copy
import gc
import os
import pickle
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest

from llmagentos import Agent, ExecutionModule, PerceptionModule
from llmagentos.agent_core import SPEEDUPS, AgentCore, PyAgentCore
from llmagentos.exceptions import ModuleError
from tests.conftest import CorridorExecution, CountingPerception, ForwardPlanning, RecordingLearning

ROOT = Path(__file__).resolve().parents[1]


def _agent(**parts: Any) -> Agent:
    return Agent(
        parts.get("perception", CountingPerception()),
        parts.get("planning", ForwardPlanning()),
        parts.get("execution", CorridorExecution()),
        parts.get("learning", RecordingLearning()),
    )


def test_ci_builds_the_compiled_core() -> None:
    """A fresh install (README's command) compiles it; the benchmarks measure that one."""
    if not os.environ.get("CI") or os.environ.get("LLMAGENTOS_PURE_PYTHON"):
        pytest.skip("only CI's install is required to have a compiler")
    assert SPEEDUPS and AgentCore is not PyAgentCore
    assert Agent.act is AgentCore.__dict__["act"]


def test_act_and_step_take_their_argument_by_name_too() -> None:
    agent = _agent()
    observation = agent.reset()
    action = agent.act(observation=observation)
    assert agent.step(action=action) == (1, 1.0)
    assert agent.step_index == 1 and agent._lean_step is not None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.act(), "act"),
        (lambda a: a.act(1, 2), "act"),
        (lambda a: a.act(obs=1), "obs"),
        (lambda a: a.step(), "step"),
        (lambda a: a.step(1, action=1), "step"),
        (lambda a: a.step(act=1), "act"),
    ],
)
def test_a_wrong_call_is_a_type_error_naming_it(call: Any, message: str) -> None:
    agent = _agent()
    agent.reset()
    with pytest.raises(TypeError, match=message):
        call(agent)
    assert agent.step_index == 0


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_a_base_exception_from_a_module_passes_through_unwrapped(raised: type) -> None:
    class Interrupted(ExecutionModule):
        def execute(self, action: Any) -> tuple[Any, float]:
            raise raised()

    agent = _agent(execution=Interrupted())
    observation = agent.reset()
    with pytest.raises(raised):
        agent.step(agent.act(observation))
    assert agent.step_index == 0 and agent.last_record is None


def test_a_module_error_is_chained_to_the_module_s_exception() -> None:
    class Failing(PerceptionModule):
        def perceive(self, observation: Any) -> Any:
            raise ValueError("no signal")

    agent = _agent(perception=Failing())
    observation = agent.reset()
    with pytest.raises(ModuleError, match="ValueError: no signal") as caught:
        agent.act(observation)
    err = caught.value
    assert isinstance(err.__cause__, ValueError) and err.__context__ is err.__cause__
    assert err.module == "perception" and err.step == 0
    # The exception the module raised keeps its traceback, down to the raise.
    assert err.__cause__.__traceback__ is not None
    frames = []
    tb = err.__cause__.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "perceive"
    assert sys.exc_info() == (None, None, None)  # nothing left as "being handled"


def test_a_module_that_changes_the_agent_s_paths_mid_call_is_safe() -> None:
    agent: Agent

    class Switching(PerceptionModule):
        def perceive(self, observation: Any) -> Any:
            agent.record_timings = not agent.record_timings  # drops the lean paths
            gc.collect()
            return {"position": observation}

    agent = _agent(perception=Switching())
    observation = agent.reset()
    for _ in range(4):
        observation, _ = agent.step(agent.act(observation))
    assert (agent.step_index, agent.episode_return, observation) == (4, 4.0, 4)


def test_copies_and_pickles_carry_the_episode_on() -> None:
    agent = _agent()
    observation = agent.reset()
    for _ in range(3):
        observation, _ = agent.step(agent.act(observation))
    for twin in (copy.deepcopy(agent), pickle.loads(pickle.dumps(agent))):
        assert (twin.step_index, twin.episode_return, twin.episode) == (3, 3.0, 0)
        assert twin.last_record == agent.last_record
        assert twin._lean_act is not None and twin._lean_step is not None
        assert twin.step(twin.act(observation)) == (4, 1.0)
        assert twin.last_record is not None and twin.last_record.step == 3
    assert agent.step_index == 3  # the original is untouched


def _stepped_agent_in_a_cycle() -> weakref.ref[Agent]:
    agent = _agent()
    agent.listeners.append(lambda record: agent)  # agent -> listeners -> closure -> agent
    observation = agent.reset()
    agent.step(agent.act(observation))
    return weakref.ref(agent)


def test_an_agent_in_a_reference_cycle_is_collected() -> None:
    alive = _stepped_agent_in_a_cycle()
    gc.collect()
    assert alive() is None


def test_the_counters_take_what_python_code_sets() -> None:
    agent = _agent()
    agent.reset()
    agent.step_index = 7
    agent.episode_return = 2
    agent.step(agent.act(agent._observation))
    assert (agent.step_index, agent.episode_return) == (8, 3.0)
    assert agent.total_steps == 8


@pytest.mark.skipif(not SPEEDUPS, reason="the suite already runs on the Python core")
def test_the_python_core_passes_the_agent_tests() -> None:
    files = ["tests/test_agent.py", "tests/test_agent_paths.py", "tests/test_seed_api.py"]
    env = {**os.environ, "LLMAGENTOS_PURE_PYTHON": "1"}
    check = "import llmagentos.agent_core as c; assert not c.SPEEDUPS"
    subprocess.run([sys.executable, "-c", check], env=env, check=True, cwd=ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-n", "0", *files, f"{__file__}"],
        check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
