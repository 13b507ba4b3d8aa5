"""The AMX workaround: llama.cpp's extra (AMX) buffers off only where the CPU lists AMX."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmagentos.llm import llama_cpu


def test_amx_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    with_amx, without, missing = tmp_path / "a", tmp_path / "b", tmp_path / "none"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert llama_cpu.cpu_lists_amx(with_amx) is True
    assert llama_cpu.cpu_lists_amx(without) is False
    assert llama_cpu.cpu_lists_amx(missing) is False


def test_model_loads_skip_extra_buffers_only_on_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    bindings = pytest.importorskip("llama_cpp.llama_cpp")
    # The real function, even if a model loaded earlier in this process applied the patch.
    current = bindings.llama_model_default_params
    patched = getattr(current, "_llmagentos_no_extra_bufts", False)
    original = current.__wrapped__ if patched else current
    monkeypatch.setattr(bindings, "llama_model_default_params", original)
    if not hasattr(original(), "use_extra_bufts"):
        pytest.skip("this llama-cpp-python has no use_extra_bufts")
    monkeypatch.setattr(llama_cpu, "cpu_lists_amx", lambda: False)
    assert llama_cpu.avoid_amx_buffers() is False
    assert bindings.llama_model_default_params is original  # nothing changed without AMX
    assert original().use_extra_bufts is True
    monkeypatch.setattr(llama_cpu, "cpu_lists_amx", lambda: True)
    assert llama_cpu.avoid_amx_buffers() is True
    assert bindings.llama_model_default_params().use_extra_bufts is False
    patched = bindings.llama_model_default_params
    assert llama_cpu.avoid_amx_buffers() is True and bindings.llama_model_default_params is patched
