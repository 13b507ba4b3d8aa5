"""One request in the batch engine: its sampler, its text, and when it is done.

Sampling follows what ``llama_cpp.Llama.create_chat_completion`` does for the same
settings, so a reply is the one the one-call-at-a-time path gives: greedy at
temperature 0, else top-k 40, top-p (0.95 unless set), min-p 0.05, the temperature and
a seeded draw; a JSON-schema grammar (llama.cpp's, per sequence) comes first.

Greedy decoding under a grammar takes a shortcut: the most likely token is checked
against the grammar alone and only when the grammar refuses it is the grammar applied
to the whole vocabulary. The choice is the same (the first most likely token the
grammar allows), and it saves most of the grammar's cost, which is otherwise larger
than the model's for a 135M-parameter model.
"""

from __future__ import annotations

import ctypes
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Completion", "GenerationSpec", "Sequence", "grammar_text", "utf8_complete"]

Emit = Callable[[str, Any], None]
"""It reports: ``("text", piece)``, then ``("done", Completion)`` or ``("error", e)``"""


@dataclass(frozen=True, slots=True)
class GenerationSpec:
    """What to generate: a rendered prompt and the request's settings."""

    prompt: str
    schema: dict[str, Any] | None = None
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished generation."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    cached_tokens: int = 0  # prompt tokens reused from the prefix cache


_GRAMMARS: dict[str, str] = {}


def grammar_text(schema: dict[str, Any]) -> str:
    """llama.cpp's GBNF for a JSON schema (any JSON if the schema cannot be converted),
    as ``create_chat_completion`` builds it; memoized: planners send one schema."""
    key = json.dumps(schema, sort_keys=True)
    found = _GRAMMARS.get(key)
    if found is None:
        from llama_cpp import llama_grammar

        try:
            found = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
        except Exception:  # as llama-cpp-python: fall back to plain JSON
            found = llama_grammar.JSON_GBNF
        if len(_GRAMMARS) < 256:
            _GRAMMARS[key] = found
    return found


def utf8_complete(data: bytes) -> int:
    """The length of ``data`` without a trailing incomplete UTF-8 character."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a leading byte (or ASCII): is its character whole?
            need = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if need <= back else len(data) - back
    return len(data)


class Sequence:
    """A request's generation state; the engine owns its KV sequence and calls these.

    Used only from the engine's thread, except :meth:`cancel`.
    """

    def __init__(self, ident: int, spec: GenerationSpec, emit: Emit) -> None:
        self.ident = ident
        self.spec = spec
        self.emit = emit
        self.cancelled = False
        self.seq = -1  # the KV sequence, once admitted
        self.tokens: list[int] = []  # the prompt
        self.pending: list[int] = []  # tokens still to decode (prompt rest, or the last sampled)
        self.n_past = 0  # tokens already in the KV cache
        self.cached = 0
        self.store_prefix = False
        self.max_tokens = 0
        self.generated: list[int] = []
        self.text = b""
        self._stops = tuple(s.encode() for s in spec.stop if s)
        self._emitted = 0
        self._chain: Any = None
        self._grammar: Any = None  # the chain's grammar sampler (greedy shortcut)
        self._greedy = spec.temperature <= 0.0

    def cancel(self) -> None:
        """Stop at the engine's next step (from any thread)."""
        self.cancelled = True

    # -- setup (engine thread) ---------------------------------------------------------------

    def prepare(
        self, bindings: Any, vocab: Any, tokenize: Callable[[str], list[int]], n_ctx: int
    ) -> None:
        """Tokenize the prompt and build the sampler. Raises ValueError if it cannot run."""
        self.tokens = tokenize(self.spec.prompt)
        if len(self.tokens) >= n_ctx:
            raise ValueError(
                f"Requested tokens ({len(self.tokens)}) exceed context window of {n_ctx}"
            )
        room = n_ctx - len(self.tokens)
        wanted = self.spec.max_tokens
        self.max_tokens = room if wanted is None or wanted <= 0 else min(wanted, room)
        self._build_chain(bindings, vocab)

    def _build_chain(self, b: Any, vocab: Any) -> None:
        spec = self.spec
        if self._greedy and spec.schema is None:
            return  # argmax of the logits: no sampler at all
        chain = b.llama_sampler_chain_init(b.llama_sampler_chain_default_params())
        self._chain = chain
        if spec.schema is not None:
            gbnf = grammar_text(spec.schema).encode()
            grammar = b.llama_sampler_init_grammar(vocab, gbnf, b"root")
            if not grammar:
                raise ValueError("llama.cpp could not parse the grammar of the output schema")
            b.llama_sampler_chain_add(chain, grammar)
            self._grammar = grammar
        if self._greedy:
            b.llama_sampler_chain_add(chain, b.llama_sampler_init_greedy())
            return
        # The rest of create_chat_completion's chain (its penalties are neutral: left out).
        seed = spec.seed if spec.seed is not None else random.getrandbits(32)
        b.llama_sampler_chain_add(chain, b.llama_sampler_init_top_k(40))
        b.llama_sampler_chain_add(chain, b.llama_sampler_init_typical(1.0, 1))
        top_p = spec.top_p if spec.top_p is not None else 0.95
        b.llama_sampler_chain_add(chain, b.llama_sampler_init_top_p(top_p, 1))
        b.llama_sampler_chain_add(chain, b.llama_sampler_init_min_p(0.05, 1))
        b.llama_sampler_chain_add(chain, b.llama_sampler_init_temp(spec.temperature))
        b.llama_sampler_chain_add(chain, b.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def free(self, b: Any) -> None:
        if self._chain is not None:
            b.llama_sampler_free(self._chain)  # frees the samplers it holds
            self._chain = self._grammar = None

    # -- each step (engine thread) ------------------------------------------------------------

    def sample(self, b: Any, ctx: Any, index: int, logits: Any) -> int:
        """The next token from the logits at batch row ``index`` (``logits``: that row)."""
        if self._chain is None:
            return int(logits.argmax())
        if self._greedy and self._grammar is not None:
            token = int(logits.argmax())
            if self._grammar_allows(b, token, float(logits[token])):
                b.llama_sampler_accept(self._chain, token)
                return token
        return int(b.llama_sampler_sample(self._chain, ctx, index))

    def _grammar_allows(self, b: Any, token: int, logit: float) -> bool:
        data = b.llama_token_data(token, logit, 0.0)
        array = b.llama_token_data_array(ctypes.pointer(data), 1, -1, False)
        b.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return not math.isinf(data.logit)

    def advance(self, token: int, piece: bytes, eog: bool) -> str | None:
        """Take the sampled token; the finish reason if the sequence is done."""
        if eog:
            return "stop"
        self.generated.append(token)
        self.text += piece
        end = utf8_complete(self.text)
        if end == len(self.text):  # as llama-cpp-python: no stop check mid-character
            for stop in self._stops:
                at = self.text.find(stop)
                if at >= 0:
                    self.text = self.text[:at]
                    return "stop"
        if len(self.generated) >= self.max_tokens:
            return "length"
        self.pending = [token]
        if self.spec.stream:
            self._emit_safe(end)
        return None

    def _emit_safe(self, end: int) -> None:
        # Hold back what may be the start of a stop string (a stop string starts on a
        # character boundary, so what is left ends whole).
        head = self.text[:end]
        hold = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(head)), hold, -1):
                if head.endswith(stop[:size]):
                    hold = size
                    break
        end -= hold
        if end > self._emitted:
            self.emit("text", self.text[self._emitted : end].decode("utf-8", errors="ignore"))
            self._emitted = end

    def completion(self, finish: str) -> Completion:
        """The result; a stream also gets the text it was not sent yet."""
        if self.spec.stream and len(self.text) > self._emitted:
            self.emit("text", self.text[self._emitted :].decode("utf-8", errors="ignore"))
            self._emitted = len(self.text)
        return Completion(
            text=self.text.decode("utf-8", errors="ignore"),
            prompt_tokens=len(self.tokens),
            completion_tokens=len(self.generated),
            finish_reason=finish,
            cached_tokens=self.cached,
        )
