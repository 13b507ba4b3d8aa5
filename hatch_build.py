"""Build hook: compile ``llmagentos._speedups`` (the Agent's lean act/step in C).

Without a working C compiler the build goes on without it, with a warning: the Agent
then runs the same code in Python (``llmagentos.agent_core.PyAgentCore``). Set
``LLMAGENTOS_PURE_PYTHON=1`` to skip it on purpose. An editable install builds it
into ``src/llmagentos/``: reinstall after changing ``_speedups.c``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "src/llmagentos/_speedups.c"
MODULE = "llmagentos._speedups"


def compile_speedups(root: Path, out: Path) -> Path:
    """Compile the extension with setuptools' build_ext (the platform's own flags)."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    extension = Extension(MODULE, [SOURCE])
    distribution = Distribution({"name": "llmagentos-speedups", "ext_modules": [extension]})
    command = build_ext(distribution)
    command.build_lib = str(out)
    command.build_temp = str(out / "objects")
    cwd = os.getcwd()
    os.chdir(root)  # setuptools wants the source path relative to the project
    try:
        command.ensure_finalized()
        command.run()
    finally:
        os.chdir(cwd)
    return Path(command.get_ext_fullpath(MODULE))


class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get("LLMAGENTOS_PURE_PYTHON", "") not in ("", "0"):
            return
        root = Path(self.root)
        out = root / "build" / "speedups"
        shutil.rmtree(out, ignore_errors=True)
        try:
            built = compile_speedups(root, out)
        except Exception as err:  # any failure (no compiler, no headers): build without it
            self.app.display_warning(
                f"llmagentos: the C speedups were not built ({type(err).__name__}: {err}); "
                "the Agent runs its Python core"
            )
            return
        if version == "editable":
            shutil.copy2(built, root / "src" / "llmagentos" / built.name)
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["force_include"][str(built)] = f"llmagentos/{built.name}"
