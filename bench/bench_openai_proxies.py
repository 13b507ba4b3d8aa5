"""OpenAI-style chat completions through llmagentos's gateway and through LiteLLM's proxy.

The same fast OpenAI-compatible upstream (``llmagentos.gateway.testing``, a bare
Starlette app answering "pong") is called four ways, sequential requests from one
keep-alive client each, interleaved:

- directly (baseline);
- through the gateway as a plain service route (``/up/v1/chat/completions``);
- through the gateway's OpenAI face (``/v1/chat/completions``, model ``mock``), which
  parses the request and calls the upstream through llmagentos's model layer, as
  LiteLLM does;
- through LiteLLM's proxy (``litellm --config``, model ``mock``), as shipped, when it
  is installed (``bash scripts/install-litellm.sh`` puts it in ``.cache/``, or set
  ``LITELLM_BIN``).

The check: the face's added p50 over LiteLLM's added p50 (<= 1: no slower than
LiteLLM). LiteLLM's published figure is ~4 ms added.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from _common import BenchResult, Check
from _http import Target, p50, percentile, sequential_latencies
from llmagentos._processes import free_port, start_server, wait_ready

NAME = "openai_proxies"
ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-bench-" + "0" * 32
CHAT = {"model": "mock", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 4}


def litellm_binary() -> str | None:
    """LiteLLM's proxy command: ``LITELLM_BIN``, ``.cache/litellm-venv``, or the PATH."""
    for candidate in (
        os.environ.get("LITELLM_BIN"),
        str(ROOT / ".cache" / "litellm-venv" / "bin" / "litellm"),
        shutil.which("litellm"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _start_litellm(binary: str, upstream: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: mock\n    litellm_params:\n      model: openai/mock\n"
        f"      api_base: {upstream}/v1\n      api_key: unused\n"
    )
    port = free_port()
    env = {
        **os.environ, "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
    }  # fmt: skip
    log = (tmp / "litellm.log").open("wb")
    process = subprocess.Popen(
        [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process=process, timeout=180, path="/health/liveliness")
    except Exception:
        process.kill()
        raise
    return process, url


def run(quick: bool) -> BenchResult:
    requests = 200 if quick else 1500
    binary = litellm_binary()
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            upstream, upstream_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
            processes.append(upstream)
            config = tmp / "gateway.toml"
            config.write_text(
                f'[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n\n'
                f'[[models]]\nname = "mock"\nmodel = "{upstream_url}/v1#mock"\n'
            )
            gateway, gateway_url = start_server(["llmagentos", "gateway", str(config)])
            processes.append(gateway)
            targets = {
                "direct": Target(f"{upstream_url}/v1/chat/completions", json=CHAT),
                "gateway route": Target(f"{gateway_url}/up/v1/chat/completions", json=CHAT),
                "gateway OpenAI face": Target(f"{gateway_url}/v1/chat/completions", json=CHAT),
            }
            if binary is not None:
                litellm, litellm_url = _start_litellm(binary, upstream_url, tmp)
                processes.append(litellm)
                targets["LiteLLM proxy"] = Target(
                    f"{litellm_url}/v1/chat/completions", json=CHAT,
                    headers={"authorization": f"Bearer {MASTER_KEY}"},
                )  # fmt: skip
            times = sequential_latencies(targets, requests)
        finally:
            for process in reversed(processes):
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
    base = p50(times["direct"])
    rows = [
        [name, f"{p50(ms):.3f}", f"{percentile(ms, 0.99):.3f}",
         "" if name == "direct" else f"{p50(ms) - base:.3f}"]
        for name, ms in times.items()
    ]  # fmt: skip
    face_added = p50(times["gateway OpenAI face"]) - base
    notes = []
    if "LiteLLM proxy" in times:
        litellm_added = p50(times["LiteLLM proxy"]) - base
        check = Check(
            name="openai_face_vs_litellm",
            measured=f"face adds {face_added:.3f} ms",
            baseline=f"LiteLLM adds {litellm_added:.3f} ms",
            ratio=face_added / litellm_added,
            target=1.0,
            direction="<=",
            note="added p50 over a direct call, same upstream, same run",
        )
    else:
        check = Check(
            name="openai_face_vs_litellm",
            measured=f"face adds {face_added:.3f} ms",
            baseline="LiteLLM not installed",
            ratio=None,
            target=1.0,
            direction="<=",
        )
        notes.append("LiteLLM's proxy is not installed: bash scripts/install-litellm.sh")
    return BenchResult(
        name=NAME,
        title=f"OpenAI chat completions: {requests} sequential requests each way",
        columns=["path", "p50 ms", "p99 ms", "added p50 ms"],
        rows=rows,
        checks=[check],
        params={"requests": requests, "litellm": binary},
        data={"p50_ms": {k: p50(v) for k, v in times.items()},
              "p99_ms": {k: percentile(v, 0.99) for k, v in times.items()}},
        notes=notes,
    )  # fmt: skip
