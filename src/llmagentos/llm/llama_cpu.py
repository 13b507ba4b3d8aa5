"""Keep llama.cpp off its AMX matrix kernels, which crash on some hosts that report AMX.

On a CPU that lists AMX (``amx_tile`` in ``/proc/cpuinfo``), a llama.cpp built for the
machine it runs on (llama-cpp-python builds from source with native CPU flags) puts the
weights in its AMX "extra buffer" and multiplies with tile instructions. On virtual
machines that list AMX without really granting it, the first prompt of more than one
token dies in ``ldtilecfg`` with a general-protection fault (SIGSEGV, seen with
llama-cpp-python 0.3.36). Loading the model with ``use_extra_bufts`` off keeps the
weights in ordinary CPU buffers (AVX-512/AVX2 kernels), which run everywhere; where no
AMX is listed nothing changes.

:func:`avoid_amx_buffers` applies it to every ``llama_cpp.Llama`` this process loads;
``python -m llmagentos.llm.llama_cpu ARGS`` runs llama-cpp-python's OpenAI-compatible
server (``python -m llama_cpp.server ARGS``) with it applied.
"""

from __future__ import annotations

import functools
import runpy
import sys
from pathlib import Path
from typing import Any

__all__ = ["avoid_amx_buffers", "cpu_lists_amx"]


@functools.cache
def cpu_lists_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU's flags include AMX tiles (``False`` where there is no cpuinfo)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and " amx_tile" in line for line in text.splitlines())


def avoid_amx_buffers() -> bool:
    """On a CPU listing AMX, make llama.cpp's model loads skip its extra buffer types.

    Returns whether it applies here. Idempotent; a no-op without llama-cpp-python.
    """
    if not cpu_lists_amx():
        return False
    try:
        from llama_cpp import llama_cpp as bindings
    except ImportError:
        return False
    defaults = bindings.llama_model_default_params
    if getattr(defaults, "_llmagentos_no_extra_bufts", False):
        return True

    @functools.wraps(defaults)
    def without_extra_buffers() -> Any:
        params = defaults()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    without_extra_buffers._llmagentos_no_extra_bufts = True  # type: ignore[attr-defined]
    bindings.llama_model_default_params = without_extra_buffers
    return True


def main(argv: list[str] | None = None) -> None:
    """``python -m llama_cpp.server`` with :func:`avoid_amx_buffers` applied."""
    avoid_amx_buffers()
    sys.argv = ["llama_cpp.server", *(sys.argv[1:] if argv is None else argv)]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
