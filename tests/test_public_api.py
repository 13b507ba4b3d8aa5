"""The public face: ``__all__``, lazy imports, the exception tree, and a light import."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import llmagentos
from llmagentos import exceptions

# Subprocesses import this checkout's code, whichever checkout is installed.
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}


def test_all_names_resolve() -> None:
    for name in llmagentos.__all__:
        assert getattr(llmagentos, name) is not None, name
    assert len(set(llmagentos.__all__)) == len(llmagentos.__all__)
    assert set(dir(llmagentos)) >= set(llmagentos.__all__)


# What a user of an LLM-agent OS reaches for first, and where each name also lives. A
# name that leaves the front door, or stops being the deep path's object, fails here.
FRONT_DOOR = {
    "LLMPlanningModule": "llmagentos.modules.llm_planning",
    "HybridPlanningModule": "llmagentos.modules.hybrid_planning",
    "tool": "llmagentos.tools",
    "ToolRegistry": "llmagentos.tools",
    "ToolResult": "llmagentos.tools",
    "Workspace": "llmagentos.tools",
    "ToolGate": "llmagentos.tools.gate",
    "http_tool": "llmagentos.tools.http",
    "ToolPolicy": "llmagentos.safety",
    "Budget": "llmagentos.safety",
    "Sandbox": "llmagentos.sandbox",
    "Model": "llmagentos.llm",
    "Message": "llmagentos.llm",
    "make_model": "llmagentos.llm",
    "ScriptedModel": "llmagentos.llm",
    "FunctionModel": "llmagentos.llm",
    "Scheduler": "llmagentos.kernel",
    "run_durable": "llmagentos.durable",
    "DurableRunner": "llmagentos.durable",
    "DurableModel": "llmagentos.durable",
    "load_config": "llmagentos.config",
    "run_experiment": "llmagentos.experiment",
    "Agent": "llmagentos.agent",
    "QTable": "llmagentos.rl",
}


@pytest.mark.parametrize("name", sorted(FRONT_DOOR))
def test_the_front_door_is_the_deep_path(name: str) -> None:
    assert name in llmagentos.__all__
    value = getattr(llmagentos, name)
    assert value is getattr(importlib.import_module(FRONT_DOOR[name]), name)
    # ... and the module that defines it says the same (deep imports stay valid).
    home = inspect.getmodule(value)
    assert home is not None
    assert getattr(home, name) is value


def test_every_lazy_name_is_its_modules_object() -> None:
    lazy = llmagentos._LAZY  # type: ignore[attr-defined]
    assert set(lazy) <= set(llmagentos.__all__)
    for name, module in lazy.items():
        assert getattr(llmagentos, name) is getattr(importlib.import_module(module), name), name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from llmagentos import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(llmagentos.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        llmagentos.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_import_is_light() -> None:
    # The seed API must not drag in numpy, pydantic, gymnasium or asyncio.
    code = (
        "import sys, llmagentos; "
        "print(sorted(m for m in ('numpy','pydantic','gymnasium','asyncio','yaml','rich') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV
    )
    assert out.stdout.strip() == "[]"


def test_the_front_door_imports_nothing_until_used() -> None:
    # The planners, tools, models, kernel and durable runs are imported on first use only.
    code = (
        "import sys, llmagentos; "
        "print(sorted(m for m in sys.modules if m.startswith(('llmagentos.llm', "
        "'llmagentos.tools', 'llmagentos.kernel', 'llmagentos.durable', 'llmagentos.safety', "
        "'llmagentos.sandbox', 'llmagentos.modules.llm_planning', 'llmagentos.config'))))"
        "; from llmagentos import ToolGate; print('llmagentos.tools.gate' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV
    )
    assert out.stdout.split() == ["[]", "True"]


def test_exception_tree() -> None:
    assert issubclass(exceptions.ModuleError, exceptions.LLMAgentOSError)
    assert issubclass(exceptions.ActionError, exceptions.ModuleError)
    assert issubclass(exceptions.ModuleOutputError, exceptions.ModuleError)
    assert issubclass(exceptions.ConfigError, ValueError)
    assert issubclass(exceptions.RegistryError, LookupError)
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.LLMAgentOSError)


def test_version_is_exposed() -> None:
    assert llmagentos.__version__.count(".") == 2
