"""Continuous batching for the embedded model: many requests, one ``llama_decode`` a step.

A :class:`BatchEngine` owns a llama.cpp context of its own (sharing the loaded weights)
and a thread that loops:

1. admit waiting requests while KV sequences are free; a request's prompt starts from
   the longest evaluated prefix in the prefix cache (:mod:`~llmagentos.llm.local_prefix`):
   that sequence's cells are copied into the request's (``llama_memory_seq_cp``) and only
   the rest is evaluated;
2. put every running request's next tokens in one batch (the token it sampled last, or
   a chunk of its prompt) and decode them together;
3. sample each request's token with its own sampler chain (its grammar included),
   check EOG, stop strings and ``max_tokens``; finished and cancelled requests leave
   and their sequence's cells are freed (``llama_memory_seq_rm``). New requests join at
   the next step.

Each sequence has a KV stream of its own (``kv_unified`` off), so a sequence's cells
sit at the same indices whoever else runs: a request's arithmetic is the same alone or
in a batch, and greedy replies are byte-identical batched and one at a time (with one
shared stream they differ in the last bits, and sometimes in the tokens). The price is
memory (one stream of ``n_ctx`` cells per sequence and prefix slot: about 23 KiB a cell
for SmolLM2-135M) and a copy of a whole stream to reuse a prefix (a few milliseconds,
against seconds of prompt evaluation).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
import time
from collections import deque
from typing import Any

from llmagentos.exceptions import ModelError
from llmagentos.llm.local_prefix import PrefixCache, PrefixMatch
from llmagentos.llm.local_sequence import Emit, GenerationSpec, Sequence
from llmagentos.llm.local_threads import ThreadChooser

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_PREFIX_SLOTS", "BatchEngine"]

DEFAULT_MAX_BATCH = 8
"""Sequences decoded together by default (the kernel gives the backend as many slots)."""

DEFAULT_PREFIX_SLOTS = 2
"""Evaluated prompt prefixes kept by default (one per distinct few-shot prompt in use)."""

N_BATCH = 512  # tokens per llama_decode: llama-cpp-python's n_batch, so prompts split alike


class BatchEngine:
    """Decodes many requests together on one llama.cpp context; thread-safe ``submit``.

    Args:
        llama: the loaded ``llama_cpp.Llama`` (its weights and vocabulary are shared).
        n_ctx: context length of each request, in tokens.
        max_batch: requests decoded together; more wait for a free sequence.
        prefix_slots: evaluated prompt prefixes kept for reuse (0: no prefix cache).
        n_threads: llama.cpp threads for one-token steps.
        n_threads_batch: threads for larger steps; ``None`` chooses between
            ``n_threads`` and up to twice as many (at most every core) by measuring
            (:mod:`~llmagentos.llm.local_threads`).
    """

    def __init__(
        self,
        llama: Any,
        *,
        n_ctx: int = 2048,
        max_batch: int = DEFAULT_MAX_BATCH,
        prefix_slots: int = DEFAULT_PREFIX_SLOTS,
        n_threads: int = 1,
        n_threads_batch: int | None = None,
    ) -> None:
        from llama_cpp import llama_cpp as bindings

        if max_batch < 1 or prefix_slots < 0:
            raise ValueError("max_batch must be >= 1 and prefix_slots >= 0")
        b = self._b = bindings
        self.llama = llama
        self.n_ctx, self.max_batch = n_ctx, max_batch
        n_seq = max_batch + prefix_slots
        params = b.llama_context_default_params()
        params.n_ctx = n_ctx * n_seq  # split evenly: each stream holds n_ctx cells
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = n_seq
        more = min(os.cpu_count() or 1, 2 * n_threads)
        self.threads = ThreadChooser((n_threads_batch,) if n_threads_batch else (n_threads, more))
        self._n_threads = n_threads
        self._batch_threads = self.threads.options[0]
        params.n_threads, params.n_threads_batch = n_threads, self._batch_threads
        # As the one-call path (llama-cpp-python's default), so replies match it.
        params.flash_attn_type = b.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.kv_unified = False
        params.no_perf = True
        ctx = b.llama_init_from_model(llama._model.model, params)
        if not ctx:
            raise ModelError("llama.cpp could not make a batch context", model="local")
        self._ctx = ctx
        self._mem = b.llama_get_memory(ctx)
        self._batch = b.llama_batch_init(N_BATCH, 0, 1)
        self._vocab = llama._model.vocab
        self._n_vocab = int(llama.n_vocab())
        self._pieces: dict[int, bytes] = {}
        self._free = list(range(max_batch))
        self.prefix = PrefixCache(range(max_batch, n_seq))
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._waiting: deque[Sequence] = deque()
        self._active: list[Sequence] = []
        self._closed = False
        # steps of generation only, by sequences in the step: [count, seconds]
        self.decode_times: dict[int, list[float]] = {}
        self.steps = self.tokens_decoded = self.requests = 0
        self.decode_seconds = 0.0  # inside llama_decode, every step
        self._thread = threading.Thread(
            target=self._run, name="llmagentos-llama-batch", daemon=True
        )
        self._thread.start()

    # -- the caller's side ----------------------------------------------------------------

    def submit(self, spec: GenerationSpec, emit: Emit) -> Sequence:
        """Queue a generation; ``emit`` is called from the engine's thread with its text
        (streams), then ``("done", Completion)`` or ``("error", exception)``."""
        sequence = Sequence(next(self._ids), spec, emit)
        with self._cond:
            if self._closed:
                raise ModelError("the local model was closed", model="local")
            self._waiting.append(sequence)
            self._cond.notify()
        return sequence

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and dashboards (approximate while it runs)."""
        with self._cond:
            waiting, running = len(self._waiting), len(self._active)
        per_step = {n: round(s / c * 1000, 3) for n, (c, s) in sorted(self.decode_times.items())}
        return {
            "waiting": waiting,
            "running": running,
            "requests": self.requests,
            "steps": self.steps,
            "tokens_decoded": self.tokens_decoded,
            "decode_seconds": round(self.decode_seconds, 3),
            "decode_ms_by_batch": per_step,
            "threads": [self._n_threads, self.threads.snapshot()],
            **self.prefix.stats(),
        }

    def close(self) -> None:
        """Fail what is waiting or running, stop the thread, free the context."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=60)
        if self._thread.is_alive():  # a decode that never ends: leave its memory be
            return
        self._b.llama_batch_free(self._batch)
        self._b.llama_free(self._ctx)

    # -- the engine's thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._active:
                    self._cond.wait()
                if self._closed:
                    break
            try:
                self._drop_cancelled()
                self._admit()
                if self._active:
                    self._step()
            except Exception as err:  # a bug of ours: fail what runs, keep serving
                self._reset(ModelError(f"the batch engine failed: {err!r}", model="local"))
        self._fail_all(ModelError("the local model was closed", model="local"))

    def _fail_all(self, error: ModelError) -> None:
        with self._cond:
            left = [*self._waiting, *self._active]
            self._waiting.clear()
        for sequence in left:
            self._release(sequence)
            sequence.emit("error", error)

    def _reset(self, error: ModelError) -> None:
        """Fail every request and start again from an empty KV cache."""
        for sequence in list(self._active):
            self._release(sequence)
            sequence.emit("error", error)
        self._b.llama_memory_clear(self._mem, True)
        self.prefix.clear()
        self._free = list(range(self.max_batch))

    @property
    def alive(self) -> bool:
        """Whether its thread runs (not after ``close``, nor in a forked child)."""
        return self._thread.is_alive() and not self._closed

    def _drop_cancelled(self) -> None:
        for sequence in [s for s in self._active if s.cancelled]:
            self._release(sequence)
        with self._cond:
            dropped = [s for s in self._waiting if s.cancelled]
            for sequence in dropped:
                self._waiting.remove(sequence)
        for sequence in dropped:
            sequence.free(self._b)  # a deferred one may hold a sampler already

    def _admit(self) -> None:
        with self._cond:
            candidates = list(self._waiting)
        for sequence in candidates:
            if not self._free:
                return
            if not sequence.tokens:
                try:
                    sequence.prepare(self._b, self._vocab, self._tokenize, self.n_ctx)
                except Exception as err:
                    self._unqueue(sequence)
                    sequence.free(self._b)
                    sequence.emit("error", ModelError(str(err), model="local"))
                    continue
            match = self.prefix.match(sequence.tokens) if self.prefix.enabled else _NO_MATCH
            if self.prefix.should_wait(sequence.tokens, match):
                continue  # a prompt being evaluated will serve it better: see local_prefix
            self._unqueue(sequence)
            self._start(sequence, match)

    def _unqueue(self, sequence: Sequence) -> None:
        with self._cond:
            self._waiting.remove(sequence)

    def _tokenize(self, text: str) -> list[int]:
        # As the chat handler of llama-cpp-python: the template added the special tokens.
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _start(self, sequence: Sequence, match: PrefixMatch) -> None:
        b, mem = self._b, self._mem
        seq = sequence.seq = self._free.pop(0)
        cut = self.prefix.use(match) if self.prefix.enabled else None
        if match.slot is not None:
            # A copy across streams takes the whole stream (llama.cpp copies it at the
            # next decode); the cells past the shared prefix are dropped at once.
            b.llama_memory_seq_cp(mem, match.slot.seq, seq, -1, -1)
            b.llama_memory_seq_rm(mem, seq, match.length, -1)
            if cut is not None:
                b.llama_memory_seq_rm(mem, match.slot.seq, cut, -1)
        sequence.n_past = sequence.cached = match.length
        sequence.pending = sequence.tokens[match.length :]
        sequence.store_prefix = match.store
        if match.store:
            self.prefix.expect(sequence.ident, sequence.tokens)
        self._active.append(sequence)
        self.requests += 1

    def _step(self) -> None:
        """One round: a decode of every generating sequence's token, then prompt chunks."""
        generating = [s for s in self._active if s.n_past >= len(s.tokens)]
        prompting = [s for s in self._active if s.n_past < len(s.tokens)]
        if generating:
            self._decode([(s, 1) for s in generating], generation=True)
        budget = N_BATCH
        for sequence in prompting:
            take = prompt_chunk(len(sequence.pending), budget)
            if take == 0:
                break
            # A decode of its own: a prompt token never shares a ubatch of llama.cpp's
            # with one token alone of its sequence (see prompt_chunk).
            self._decode([(sequence, take)], generation=False)
            budget -= take

    def _decode(self, fed: list[tuple[Sequence, int]], *, generation: bool) -> None:
        """Decode ``count`` pending tokens of each sequence; sample those left with none."""
        b, batch = self._b, self._batch
        n = 0
        rows: list[tuple[Sequence, int]] = []
        for sequence, count in fed:
            for offset, token in enumerate(sequence.pending[:count]):
                batch.token[n] = token
                batch.pos[n] = sequence.n_past + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = sequence.seq
                batch.logits[n] = 0
                n += 1
            if count == len(sequence.pending):
                batch.logits[n - 1] = 1
                rows.append((sequence, n - 1))
        batch.n_tokens = n
        threads = self._n_threads if n == 1 else self.threads.pick(n)
        if n > 1 and threads != self._batch_threads:
            b.llama_set_n_threads(self._ctx, self._n_threads, threads)
            self._batch_threads = threads
        started = time.perf_counter()
        status = b.llama_decode(self._ctx, batch)
        elapsed = time.perf_counter() - started
        self.decode_seconds += elapsed
        if n > 1:
            self.threads.record(threads, elapsed, n)
        if status != 0:
            self._fail_batch(fed, status)
            return
        self.steps += 1
        self.tokens_decoded += n
        if generation:
            entry = self.decode_times.setdefault(n, [0, 0.0])
            entry[0] += 1
            entry[1] += elapsed
        for sequence, count in fed:
            sequence.n_past += count
            del sequence.pending[:count]
        for sequence, row in rows:
            self._sample(sequence, row)

    def _sample(self, sequence: Sequence, row: int) -> None:
        import numpy as np

        b = self._b
        try:
            pointer = b.llama_get_logits_ith(self._ctx, row)
            logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
            token = sequence.sample(b, self._ctx, row, logits)
            if sequence.store_prefix:  # its prompt is evaluated: keep it for others
                self._store(sequence)
            eog = bool(b.llama_vocab_is_eog(self._vocab, token))
            finish = sequence.advance(token, b"" if eog else self._piece(token), eog)
        except Exception as err:
            self._release(sequence)
            sequence.emit("error", ModelError(f"generation failed: {err}", model="local"))
            return
        if finish is not None:
            completion = sequence.completion(finish)
            self._release(sequence)
            sequence.emit("done", completion)

    def _store(self, sequence: Sequence) -> None:
        b, mem = self._b, self._mem
        sequence.store_prefix = False
        self.prefix.forget(sequence.ident)
        slot = self.prefix.victim()
        b.llama_memory_seq_rm(mem, slot.seq, -1, -1)
        b.llama_memory_seq_cp(mem, sequence.seq, slot.seq, -1, -1)
        self.prefix.stored(slot, sequence.tokens)

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buffer = ctypes.create_string_buffer(256)
            size = self._b.llama_token_to_piece(self._vocab, token, buffer, 256, 0, False)
            piece = self._pieces[token] = buffer.raw[: max(size, 0)]
        return piece

    def _release(self, sequence: Sequence) -> None:
        """Free the sequence's cells, sampler and id (it is done, failed or cancelled)."""
        if sequence in self._active:
            self._active.remove(sequence)
            self._b.llama_memory_seq_rm(self._mem, sequence.seq, -1, -1)
            self._free.append(sequence.seq)
            self._free.sort()
        self.prefix.forget(sequence.ident)
        sequence.free(self._b)

    def _fail_batch(self, fed: list[tuple[Sequence, int]], status: int) -> None:
        reason = "no room in the KV cache" if status == 1 else f"llama_decode returned {status}"
        error = ModelError(f"generation failed: {reason}", model="local")
        for sequence, _count in fed:
            self._release(sequence)
            sequence.emit("error", error)


_NO_MATCH = PrefixMatch(None, 0, False)


def prompt_chunk(remaining: int, budget: int) -> int:
    """How many of a prompt's ``remaining`` tokens to decode now, within ``budget``.

    Never one token alone (nor one left for later): llama.cpp's attention takes another
    kernel for a single token of a sequence in a ubatch, and its rounding differs
    enough to change a reply (logits up to 0.9 apart, measured on planner prompts).
    Generated tokens always go one at a time, alone and batched alike.
    """
    if remaining <= budget:
        return remaining
    take = budget if remaining - budget >= 2 else budget - 1
    return take if take >= 2 else 0
