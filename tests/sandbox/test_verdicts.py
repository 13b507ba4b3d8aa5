# ruff: noqa: E501  (payload source lines read best unbroken)
"""The test verdict is the harness's: solutions that try to forge a pass all fail.

Each payload is a candidate solution for ``add`` (two tests) that tries to obtain a
pass without being right: forging the runner's report (through its frames, the
garbage collector, every descriptor, stdout, /proc), exiting early, hooking exit and
signals, shadowing a module the runner imports, returning an object that equals
anything, reading the tests, or bringing its own ``test_*`` functions.
"""

from __future__ import annotations

import pytest

from llmagentos.codegen.env import CodeTaskEnv
from llmagentos.codegen.tasks import builtin_tasks
from llmagentos.exceptions import SandboxUnavailable
from llmagentos.modules.tool_feedback import TestPassRateReward
from llmagentos.sandbox import Sandbox, SandboxLimits
from llmagentos.types import Transition

TESTS = (
    "from solution import *\n\n"
    "def test_small():\n    assert add(1, 2) == 3\n\n"
    "def test_negative():\n    assert add(-1, -2) == -3\n"
)
NAMES = ["test_small", "test_negative"]

_FORGE = """
import json, os, re, sys
NAMES = ['test_small', 'test_negative']
def report(nonce):
    lines = [nonce + ' ' + json.dumps({'tests': NAMES})]
    lines += [nonce + ' ' + json.dumps({'outcome': {'name': n, 'passed': True, 'message': '', 'seconds': 0.0}}) for n in NAMES]
    lines.append(nonce + ' ' + json.dumps({'done': True}))
    return ('\\n'.join(lines) + '\\n').encode()
def nonces():
    found, frame = set(), sys._getframe()
    while frame is not None:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if isinstance(value, str) and re.fullmatch('[0-9a-f]{32}', value):
                found.add(value)
        frame = frame.f_back
    import gc
    for obj in gc.get_objects():
        if isinstance(obj, dict):
            for value in list(obj.values()):
                if isinstance(value, str) and re.fullmatch('[0-9a-f]{32}', value):
                    found.add(value)
    return found or {'0' * 32}
def everywhere(data):
    for fd in range(3, 64):
        try:
            os.write(fd, data)
        except OSError:
            pass
    for pid in os.listdir('/proc'):
        if pid.isdigit() and int(pid) != os.getpid():
            for fd in range(64):
                try:
                    with open(f'/proc/{pid}/fd/{fd}', 'wb') as handle:
                        handle.write(data)
                except OSError:
                    pass
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
"""

PAYLOADS = {
    # Today's hole: walk the frames to the runner, take its nonce, write a consistent
    # all-pass report to every descriptor and to stdout, and leave before any test.
    "forge_everywhere_and_exit": _FORGE
    + "for nonce in nonces():\n    everywhere(report(nonce))\nos._exit(0)\n",
    # Call the runner's own emit function, found through the frames or the gc.
    "call_the_runners_emit": (
        "import gc, os, sys\nNAMES = ['test_small', 'test_negative']\nemits = []\n"
        "frame = sys._getframe()\nwhile frame is not None:\n"
        "    emits += [v for k, v in frame.f_locals.items() if k == 'emit' and callable(v)]\n"
        "    frame = frame.f_back\n"
        "emits += [o for o in gc.get_objects() if getattr(o, '__name__', '') == 'emit' and callable(o)]\n"
        "for emit in emits[:1]:\n    emit({'tests': NAMES})\n"
        "    for n in NAMES:\n        emit({'outcome': {'name': n, 'passed': True, 'message': '', 'seconds': 0}})\n"
        "    emit({'done': True})\n    os._exit(0)\n"
        "def add(a, b):\n    return 0\n"
    ),
    "forge_from_inside_the_call": _FORGE
    + "def add(a, b):\n    for nonce in nonces():\n        everywhere(report(nonce))\n    os._exit(0)\n",
    "exit_0_at_import": "import os\nos._exit(0)\n",
    "exit_0_inside_the_call": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "sys_exit_inside_the_call": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    # Hooks: exit and signals cannot stop a test from failing.
    "neutered_exits_and_atexit": _FORGE
    + "import atexit, builtins\nsys.exit = os._exit = builtins.exit = lambda *a: None\n"
    "atexit.register(lambda: [everywhere(report(n)) for n in nonces()])\n"
    "def add(a, b):\n    return a - b\n",
    "alarm_ignored_and_sleep": (
        "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "def add(a, b):\n    time.sleep(100)\n"
    ),
    "signal_the_runner": (
        "import os, signal\ndef add(a, b):\n"
        "    for sig in (signal.SIGALRM, signal.SIGUSR1, signal.SIGINT):\n"
        "        try:\n            os.kill(os.getppid(), sig)\n        except OSError:\n            pass\n"
        "    return 0\n"
    ),
    # An object that equals anything, as a value and as an int subclass.
    "always_equal": (
        "class Anything:\n    def __eq__(self, other): return True\n"
        "    def __ne__(self, other): return False\n    __hash__ = object.__hash__\n"
        "def add(a, b):\n    return Anything()\n"
    ),
    "always_equal_int": (
        "class Anything(int):\n    def __eq__(self, other): return True\n"
        "    def __ne__(self, other): return False\n    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return Anything(0)\n"
    ),
    # A module the runner or the tests import, planted in the shared working directory.
    "shadow_a_module": (
        "for name in ('fractions', 'json', 'inspect', 'traceback', 'subprocess', 'signal'):\n"
        "    with open(f'/sandbox/{name}.py', 'w') as f:\n"
        "        f.write(\"print('SHADOW RAN IN THE RUNNER', flush=True)\\n\")\n"
        "def add(a, b):\n    return 0\n"
    ),
    # Its own tests, pulled in by `from solution import *`.
    "own_passing_tests": "add = None\n"
    + "".join(f"def test_mine_{i}():\n    pass\n" for i in range(12)),
    "own_test_named_like_the_tasks": (
        "def add(a, b):\n    return 0\ndef test_small():\n    pass\ndef test_negative():\n    pass\n"
    ),
}


@pytest.fixture(scope="module", params=["bwrap", "unshare"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    try:
        return Sandbox(SandboxLimits(cpu_seconds=5, wall_seconds=10), backend=request.param)
    except SandboxUnavailable as err:
        pytest.skip(f"{request.param} unavailable here: {err}")


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_a_forged_pass_is_a_failure(sandbox: Sandbox, name: str) -> None:
    tests = TESTS + "\nimport fractions\n"  # imported after the solution ran
    report = sandbox.run_tests(PAYLOADS[name], tests, per_test_seconds=1.0)
    assert [o.name for o in report.outcomes] == NAMES, report.to_dict()
    assert report.passed == 0, report.to_dict()
    assert (report.failed, report.total, report.pass_rate) == (2, 2, 0.0)
    assert not report.ok
    assert "SHADOW RAN IN THE RUNNER" not in report.result.stdout


def test_the_honest_solution_still_passes_alongside(sandbox: Sandbox) -> None:
    report = sandbox.run_tests("def add(a, b):\n    return a + b\n", TESTS + "\nimport fractions\n")
    assert (report.passed, report.total) == (2, 2), report.to_dict()


SNOOP = """
import os
seen = []
for path in ('test_solution.py', '/sandbox/test_solution.py'):
    try:
        seen.append(open(path).read()[:20])
    except OSError as err:
        seen.append(type(err).__name__)
parent = os.getppid()
for path in (f'/proc/{parent}/mem', f'/proc/{parent}/environ', f'/proc/{parent}/fd/0'):
    try:
        with open(path, 'rb') as f:
            seen.append(f.read(20).hex() or 'read')
    except OSError as err:
        seen.append(type(err).__name__)
try:
    seen.append(str(len(os.listdir(f'/proc/{parent}/fd'))))
except OSError as err:
    seen.append(type(err).__name__)
print(seen, flush=True)
def add(a, b):
    return a + b
"""


def test_the_solution_cannot_read_the_tests_or_the_runner(sandbox: Sandbox) -> None:
    report = sandbox.run_tests(SNOOP, TESTS)
    seen = report.result.stdout
    assert seen.startswith("["), report.to_dict()
    assert "from solution" not in seen
    assert seen.count("Error") == 6, seen  # each attempt refused
    assert report.passed == 2  # and the tests ran normally


def test_twelve_own_tests_and_no_solution_score_zero_on_clamp(sandbox: Sandbox) -> None:
    """The issue's figure: ``clamp = None`` plus 12 empty tests scored 0.75."""
    task = next(t for t in builtin_tasks() if t.id == "clamp")
    cheat = "clamp = None\n" + "".join(f"def test_free_{i}():\n    pass\n" for i in range(12))
    report = sandbox.run_tests(cheat, task.tests)
    assert report.total == 4
    assert report.pass_rate == 0.0
    env = CodeTaskEnv(task, repairs=0, sandbox=sandbox)
    env.reset()
    observation, reward, _, _, info = env.step(cheat)
    assert reward == 0.0
    assert info["report"]["total"] == 4
    shaped = TestPassRateReward(all_pass_bonus=1.0)
    transition = Transition(
        observation, observation, cheat, reward, observation, observation, True, info=info
    )
    assert shaped.reward(transition) == 0.0


RICH_TESTS = """
from solution import *
import solution

def test_exceptions_cross_as_their_type():
    try:
        parse("x")
    except ValueError as err:
        assert "bad number" in str(err)
    else:
        raise AssertionError("no error")

def test_exported_exception_class():
    try:
        strict(-1)
    except NegativeError:
        pass
    else:
        raise AssertionError("no error")

def test_in_place_changes_come_back():
    items = [3, 1, 2]
    sort_in_place(items)
    assert items == [1, 2, 3]

def test_callbacks_and_generators():
    assert apply_all(lambda x: x * 10, [1, 2]) == [10, 20]
    assert list(count_up(3)) == [0, 1, 2]

def test_objects_and_their_methods():
    stack = Stack()
    stack.push(4)
    stack.push(5)
    assert stack.pop() == 5
    assert len(stack) == 1
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(2, 1)

def test_data_types():
    assert pair() == (1, "a")
    assert table() == {"k": [1.5, None, True], (1, 2): frozenset({3})}
    assert solution.LIMIT == 10

async def test_async_tests_are_awaited():
    assert add(1, 1) == 3
"""
RICH_SOLUTION = """
class NegativeError(Exception):
    pass
LIMIT = 10
def add(a, b):
    return a + b
def parse(text):
    raise ValueError("bad number: " + text)
def strict(n):
    if n < 0:
        raise NegativeError(n)
def sort_in_place(items):
    items.sort()
def apply_all(f, xs):
    return [f(x) for x in xs]
def count_up(n):
    yield from range(n)
class Stack:
    def __init__(self):
        self.items = []
    def push(self, x):
        self.items.append(x)
    def pop(self):
        return self.items.pop()
    def __len__(self):
        return len(self.items)
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __eq__(self, other):
        return (self.x, self.y) == (other.x, other.y)
def pair():
    return (1, "a")
def table():
    return {"k": [1.5, None, True], (1, 2): frozenset({3})}
"""


def test_tests_use_the_solution_as_they_would_in_process(sandbox: Sandbox) -> None:
    report = sandbox.run_tests(RICH_SOLUTION, RICH_TESTS)
    by_name = {o.name: o for o in report.outcomes}
    assert report.error is None, report.to_dict()
    failed = {name: o.message for name, o in by_name.items() if not o.passed}
    assert set(failed) == {"test_async_tests_are_awaited"}, failed
    assert "AssertionError" in failed["test_async_tests_are_awaited"]


def test_modules_given_to_the_tests_come_from_the_harness_copy(sandbox: Sandbox) -> None:
    tests = "from solution import *\nfrom helper import EXPECTED\n\ndef test_small():\n    assert add(1, 2) == EXPECTED\n"
    files = {"helper.py": "EXPECTED = 3\n"}
    cheat = (
        "open('/sandbox/helper.py', 'w').write('EXPECTED = 0\\n')\ndef add(a, b):\n    return 0\n"
    )
    assert sandbox.run_tests(cheat, tests, files=files).passed == 0
    honest = "def add(a, b):\n    return a + b\n"
    assert sandbox.run_tests(honest, tests, files=files).passed == 1
