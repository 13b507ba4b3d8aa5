"""The real sandbox for the codegen tests (skipped where the host cannot confine code)."""

from __future__ import annotations

import pytest

from llmagentos.codegen.env import default_sandbox
from llmagentos.exceptions import SandboxUnavailable
from llmagentos.sandbox import Sandbox


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    try:
        return default_sandbox()
    except SandboxUnavailable as err:
        pytest.skip(f"no sandbox on this host: {err}")
