"""Tokens per second of the embedded model through llmagentos vs raw ``llama_cpp.Llama``.

Both sides use the same loaded SmolLM2 weights and the same prompt, greedy decoding and
token limit, so they generate the same tokens; the difference is what our provider adds
(request validation, the worker-thread hop, response parsing). Also reported: the
provider's async path from an event loop, and through the sync face.
"""

from __future__ import annotations

import asyncio
from typing import Any

from _common import BenchResult, Case, Check, clock, interleave, ratio_text

NAME = "local_model_tokens"
TARGET = 0.95
PROMPT = "Describe a robot that navigates a maze to reach its charging dock."
MAX_TOKENS = 64


def run(quick: bool) -> BenchResult:
    from llmagentos.llm import Message, ModelRequest, ModelSettings
    from llmagentos.llm.local import LocalModel

    model = LocalModel()
    llama, lock = model._model()
    messages = [{"role": "user", "content": PROMPT}]
    request = ModelRequest(
        messages=(Message.user(PROMPT),),
        settings=ModelSettings(temperature=0.0, max_tokens=MAX_TOKENS),
    )
    tokens: dict[str, int] = {}

    def raw() -> tuple[int, int]:
        start = clock()
        with lock:
            out: Any = llama.create_chat_completion(
                messages=messages, temperature=0.0, max_tokens=MAX_TOKENS
            )
        elapsed = clock() - start
        tokens["raw"] = int(out["usage"]["completion_tokens"])
        return elapsed, tokens["raw"]

    def provider_sync() -> tuple[int, int]:
        start = clock()
        response = model.request(request)
        elapsed = clock() - start
        tokens["sync"] = response.usage.completion_tokens
        return elapsed, tokens["sync"]

    runner = asyncio.Runner()

    def provider_async() -> tuple[int, int]:
        start = clock()
        response = runner.run(model.arequest(request))
        elapsed = clock() - start
        tokens["async"] = response.usage.completion_tokens
        return elapsed, tokens["async"]

    cases: dict[str, Case] = {"raw": raw, "async": provider_async, "sync": provider_sync}
    repeats = 3 if quick else 9
    try:
        stats = interleave(cases, repeats=repeats, warmups=1)
    finally:
        runner.close()
    rate = {key: 1e9 / item.median for key, item in stats.items()}
    labels = {
        "raw": "raw llama_cpp.Llama.create_chat_completion",
        "async": "llmagentos LocalModel.arequest (event loop)",
        "sync": "llmagentos LocalModel.request (sync face)",
    }
    rows = [
        [labels[key], str(tokens[key]), f"{rate[key]:.1f}",
         ratio_text(stats["raw"].ratio_to(stats[key]))]
        for key in labels
    ]  # fmt: skip
    ratio = stats["raw"].ratio_to(stats["async"])
    return BenchResult(
        name=NAME,
        title=f"{NAME}: SmolLM2-135M Q4_1, {MAX_TOKENS} tokens greedy x {repeats} repeats",
        columns=["path", "tokens", "median tokens/s", "ratio vs raw"],
        rows=rows,
        checks=[
            Check(
                name=NAME,
                measured=f"provider {rate['async']:.1f} tok/s",
                baseline=f"raw llama.cpp {rate['raw']:.1f} tok/s",
                ratio=ratio,
                target=TARGET,
                direction=">=",
            )
        ],
        params={"prompt": PROMPT, "max_tokens": MAX_TOKENS, "repeats": repeats},
        data={key: {"tokens_per_s": rate[key], **stats[key].to_dict()} for key in labels},
        notes=[f"ratio: median over repeats of (tokens/s / raw tokens/s); target >= {TARGET}"],
    )
