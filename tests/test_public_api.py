"""The public face: ``__all__``, lazy imports, the exception tree, and a light import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import llmagentos
from llmagentos import exceptions


def test_all_names_resolve() -> None:
    for name in llmagentos.__all__:
        assert getattr(llmagentos, name) is not None, name
    assert len(set(llmagentos.__all__)) == len(llmagentos.__all__)
    assert set(dir(llmagentos)) >= set(llmagentos.__all__)


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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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
