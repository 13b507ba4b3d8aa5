"""Tools an LLM may call: typed Python functions with a JSON schema, and a registry.

``@tool`` turns a typed function (sync or async) into a :class:`FunctionTool` whose
``spec`` is the :class:`~llmagentos.llm.types.Tool` sent to the model. Calling a tool
never raises for the model's mistakes or the tool's failures: invalid arguments, a
timeout or an exception become a :class:`ToolResult` with ``ok=False`` and an error
message the model can read and repair from.

Async tools run on the caller's event loop; sync tools on a
:class:`~llmagentos.tools.pool.ToolPool` (the registry's, else the process-wide one),
never on asyncio's default executor; ``isolation="process"`` tools in the pool's worker
processes (:mod:`llmagentos.tools.isolation`).
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from llmagentos._json import jsonable
from llmagentos.exceptions import (
    ModelOutputError,
    RegistryError,
    ToolDefinitionError,
    ToolError,
)
from llmagentos.llm.types import Message, Tool, ToolCall
from llmagentos.modules.base import run_sync
from llmagentos.telemetry.state import TELEMETRY
from llmagentos.tools.pool import ToolPool, default_tool_pool

__all__ = [
    "BaseTool",
    "FunctionTool",
    "Isolation",
    "ToolDefinitionError",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "tool",
]

#: Where a sync tool runs: ``"thread"`` (a pool thread) or ``"process"`` (a worker process).
Isolation = Literal["thread", "process"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ARGS_HEADERS = ("args:", "arguments:", "parameters:", "params:")
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class ToolResult(BaseModel):
    """The outcome of one tool call: a JSON-able ``value`` or an ``error`` message."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    name: str = ""

    def content(self) -> str:
        """The result as the JSON text the model reads."""
        data: dict[str, Any] = (
            {"ok": True, "value": self.value} if self.ok else {"ok": False, "error": self.error}
        )
        return json.dumps(data, ensure_ascii=False)

    def to_message(self, tool_call_id: str) -> Message:
        """The result as a ``tool`` message answering the call ``tool_call_id``."""
        return Message.tool(self.content(), tool_call_id=tool_call_id, name=self.name or None)


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The first paragraph and the Google-style ``Args:`` descriptions of a docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    first: list[str] = []
    for line in lines:
        if not line.strip():
            if first:
                break
            continue
        if line.strip().lower() in _ARGS_HEADERS:
            break
        first.append(line.strip())
    params: dict[str, str] = {}
    in_args = False
    header_indent = 0
    current: str | None = None
    entry_indent: int | None = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.lower() in _ARGS_HEADERS:
            in_args, header_indent, current, entry_indent = True, indent, None, None
            continue
        if not in_args or not stripped:
            continue
        if indent <= header_indent:  # the next section (Returns:, Raises:, ...)
            in_args = False
            continue
        match = _ARG_LINE.match(stripped)
        if match and (entry_indent is None or indent <= entry_indent):
            entry_indent = indent
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current is not None:
            params[current] = f"{params[current]} {stripped}".strip()
    return " ".join(first), params


def _strip_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's auto-generated ``title`` keys, which only cost the model tokens."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    return schema


def _format_errors(err: ValidationError) -> str:
    """``field: message (got value); ...`` for every error pydantic found."""
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        message = item["msg"]
        if item["type"] == "missing":
            message = "field required"
        elif item["type"] != "extra_forbidden":
            message += f" (got {item['input']!r:.60})"
        parts.append(f"{where}: {message}")
    return "arguments invalid: " + "; ".join(parts)


class BaseTool(ABC):
    """What a :class:`ToolRegistry` holds: a named, described tool that answers calls.

    :class:`FunctionTool` wraps a local function; other kinds (an MCP server's tool,
    say) implement :attr:`parameters` and :meth:`acall` and get the rest from here.
    """

    name: str
    namespace: str | None
    description: str
    timeout: float | None

    @property
    def qualified_name(self) -> str:
        """``namespace.name``, or just ``name`` without a namespace."""
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    @property
    @abstractmethod
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments."""

    @property
    def spec(self) -> Tool:
        """The :class:`Tool` sent to the model, under the qualified name."""
        return self.spec_as(self.qualified_name)

    def spec_as(self, name: str) -> Tool:
        """The :class:`Tool` sent to the model, under ``name``."""
        return Tool(name=name, description=self.description, parameters=self.parameters)

    @abstractmethod
    async def acall(
        self,
        arguments: dict[str, Any] | str | None = None,
        *,
        timeout: float | None = None,
        name: str | None = None,
    ) -> ToolResult:
        """Run the tool; failures come back as ``ToolResult(ok=False)``, never raised."""

    def call(
        self, arguments: dict[str, Any] | str | None = None, *, timeout: float | None = None
    ) -> ToolResult:
        """Synchronous :meth:`acall` (works inside a running event loop too)."""
        return run_sync(self.acall(arguments, timeout=timeout))


class FunctionTool(BaseTool):
    """A Python function exposed to a model; build one with :func:`tool`.

    Attributes:
        name: the tool's own name; ``qualified_name`` adds the namespace (``web.fetch``).
        description: what the model reads about the tool.
        namespace: the default namespace the registry files it under, or ``None``.
        timeout: seconds a call may take, or ``None`` for no limit.
        isolation: ``"thread"``, or ``"process"`` to run each call in a worker process
            that is killed on timeout (the function must be importable at module level).
        arguments_model: the pydantic model that validates the arguments.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
        isolation: Isolation = "thread",
    ) -> None:
        self.func = func
        self.name = name or func.__name__
        self.namespace = namespace
        for part in (self.name, namespace):
            if part is not None and not _NAME.match(part):
                raise ToolDefinitionError(
                    f"tool name {part!r} must match {_NAME.pattern} (letters, digits, _ . -)"
                )
        if timeout is not None and timeout <= 0:
            raise ToolDefinitionError(f"tool {self.name!r}: timeout must be > 0, got {timeout}")
        self.timeout = timeout
        summary, arg_docs = _parse_docstring(inspect.getdoc(func))
        self.description = summary if description is None else description
        self.is_async = inspect.iscoroutinefunction(func)
        self.arguments_model = self._build_model(arg_docs)
        self._params = list(self.arguments_model.model_fields)
        if isolation not in ("thread", "process"):
            raise ToolDefinitionError(
                f"tool {self.name!r}: isolation must be 'thread' or 'process', got {isolation!r}"
            )
        self.isolation: Isolation = isolation
        #: ``module:qualname`` of a process-isolated tool, else ``None``.
        self.target = self._target() if isolation == "process" else None

    def _target(self) -> str:
        """``module:qualname``, which a worker process imports to find the function."""
        if os.name != "posix":  # its workers use process groups and inherited sockets
            raise ToolDefinitionError(
                f"tool {self.name!r}: isolation='process' needs a POSIX system"
            )
        module = getattr(self.func, "__module__", None)
        qualname = getattr(self.func, "__qualname__", "")
        if module == "__main__":
            raise ToolDefinitionError(
                f"tool {self.name!r}: isolation='process' cannot import a function of the "
                "script run as __main__ in a worker process; define it in a module"
            )
        if not module or not qualname or "<" in qualname:
            raise ToolDefinitionError(
                f"tool {self.name!r}: isolation='process' needs a function defined at module "
                f"level, importable by a worker process (got {qualname or self.func!r})"
            )
        return f"{module}:{qualname}"

    def _build_model(self, arg_docs: dict[str, str]) -> type[BaseModel]:
        try:
            hints = inspect.get_annotations(self.func, eval_str=True)
        except Exception as err:
            raise ToolDefinitionError(
                f"tool {self.name!r}: cannot resolve type hints: {type(err).__name__}: {err}"
            ) from err
        fields: dict[str, Any] = {}
        for param in inspect.signature(self.func).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ToolDefinitionError(
                    f"tool {self.name!r}: *args and **kwargs cannot be described to a model "
                    f"(parameter {param.name!r})"
                )
            if param.kind is param.POSITIONAL_ONLY:
                raise ToolDefinitionError(
                    f"tool {self.name!r}: positional-only parameter {param.name!r} is not supported"
                )
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (
                hints.get(param.name, Any),
                Field(default, description=arg_docs.get(param.name)),
            )
        model_name = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]", self.name) if p)
        return create_model(
            f"{model_name or 'Tool'}Arguments",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments."""
        return _strip_titles(self.arguments_model.model_json_schema())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped function directly, with no validation."""
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.qualified_name!r})"

    async def acall(
        self,
        arguments: dict[str, Any] | str | None = None,
        *,
        timeout: float | None = None,
        name: str | None = None,
        pool: ToolPool | None = None,
    ) -> ToolResult:
        """Validate ``arguments`` (a dict or JSON text) and run the tool.

        ``timeout`` overrides the tool's own; ``name`` labels the result (the
        qualified name by default); ``pool`` runs sync and isolated tools (the
        process-wide :func:`~llmagentos.tools.pool.default_tool_pool` by default).
        Never raises for bad arguments or a failing tool.
        """
        label = name or self.qualified_name
        start = time.perf_counter()

        def fail(message: str) -> ToolResult:
            return ToolResult(
                ok=False, error=message, seconds=time.perf_counter() - start, name=label
            )

        if arguments is None:
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = ToolCall(id="", name=label, arguments=arguments).parsed_arguments()
            except ModelOutputError as err:
                return fail(str(err))
        try:
            validated = self.arguments_model.model_validate(arguments)
        except ValidationError as err:
            return fail(_format_errors(err))
        kwargs = {param: getattr(validated, param) for param in self._params}
        limit = self.timeout if timeout is None else timeout
        runner = pool or default_tool_pool()
        try:
            if self.target is not None:
                ok, value = await runner.processes.run(
                    self.target, validated.model_dump(mode="json"), timeout=limit
                )
                if not ok:
                    return fail(str(value))
            elif self.is_async:
                value = await asyncio.wait_for(self.func(**kwargs), limit)
            else:
                value = await runner.run(self.func, timeout=limit, **kwargs)
            value = jsonable(value)
        except TimeoutError as err:  # the pools say how far the call got
            detail = f" ({err})" if str(err) else ""
            return fail(f"timed out after {limit:g} s{detail}")
        except Exception as err:
            return fail(f"{type(err).__name__}: {err}")
        return ToolResult(ok=True, value=value, seconds=time.perf_counter() - start, name=label)


@overload
def tool(func: Callable[..., Any], /) -> FunctionTool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    namespace: str | None = None,
    timeout: float | None = None,
    isolation: Isolation = "thread",
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    namespace: str | None = None,
    timeout: float | None = None,
    isolation: Isolation = "thread",
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Make a :class:`FunctionTool` of a typed function; use bare or with options.

    Example::

        @tool(namespace="weather", timeout=5)
        async def forecast(city: str, days: int = 3) -> dict[str, Any]:
            '''Forecast the weather.

            Args:
                city: the city name.
                days: how many days ahead.
            '''

    ``isolation="process"`` runs each call in a worker process, killed on timeout (see
    :mod:`llmagentos.tools.isolation`).
    """

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(
            f,
            name=name,
            description=description,
            namespace=namespace,
            timeout=timeout,
            isolation=isolation,
        )

    return wrap if func is None else wrap(func)


class ToolRegistry:
    """Tools by qualified name (``namespace.name``); runs a model turn's tool calls.

    Args:
        tools: tools (or plain functions, wrapped with :func:`tool`) to register.
        pool: the :class:`~llmagentos.tools.pool.ToolPool` its sync and isolated tools
            run on (default: the process-wide one).
    """

    def __init__(
        self, tools: Iterable[BaseTool | Callable[..., Any]] = (), *, pool: ToolPool | None = None
    ) -> None:
        self.pool = pool
        self._tools: dict[str, BaseTool] = {}
        for item in tools:
            self.add(item)

    def add(self, item: BaseTool | Callable[..., Any], *, namespace: str | None = None) -> BaseTool:
        """Register a tool (plain functions are wrapped with :func:`tool`).

        ``namespace`` overrides the tool's own. Returns the tool.

        Raises:
            ToolDefinitionError: the qualified name is invalid or already taken.
        """
        fn_tool = item if isinstance(item, BaseTool) else tool(item)
        space = fn_tool.namespace if namespace is None else namespace
        qualified = f"{space}.{fn_tool.name}" if space else fn_tool.name
        if not _NAME.match(qualified):
            raise ToolDefinitionError(f"tool name {qualified!r} must match {_NAME.pattern}")
        if qualified in self._tools:
            taken = self._tools[qualified]
            raise ToolDefinitionError(
                f"tool {qualified!r} is already registered ({getattr(taken, 'func', taken)!r}); "
                "use another name or namespace"
            )
        self._tools[qualified] = fn_tool
        return fn_tool

    def names(self) -> list[str]:
        """The qualified names, in registration order."""
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def suggestions(self, name: str) -> list[str]:
        """Registered names close to ``name`` (same suffix first, then similar)."""
        same = [q for q in self._tools if q.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]]
        close = difflib.get_close_matches(name, list(self._tools), n=3, cutoff=0.6)
        return list(dict.fromkeys([*same, *close]))[:3]

    def get(self, name: str) -> BaseTool:
        """The tool registered as ``name``.

        Raises:
            RegistryError: no such tool; lists the close matches.
        """
        try:
            return self._tools[name]
        except KeyError:
            raise RegistryError("tool", name, self.suggestions(name)) from None

    def specs(self, namespaces: Iterable[str] | None = None) -> list[Tool]:
        """The :class:`Tool` specs, optionally only those in ``namespaces`` (``""``: none)."""
        wanted = None if namespaces is None else set(namespaces)
        return [
            t.spec_as(q)
            for q, t in self._tools.items()
            if wanted is None or (q.rsplit(".", 1)[0] if "." in q else "") in wanted
        ]

    async def run_call(self, call: ToolCall, *, timeout: float | None = None) -> ToolResult:
        """Run one call; unknown names and malformed arguments become error results."""
        if TELEMETRY.on:
            from llmagentos.telemetry.genai import traced_tool_call

            try:
                description = self.get(call.name).description
            except RegistryError:
                description = ""
            return await traced_tool_call(call, lambda: self._run_call(call, timeout), description)
        return await self._run_call(call, timeout)

    async def _run_call(self, call: ToolCall, timeout: float | None) -> ToolResult:
        try:
            fn_tool = self.get(call.name)
        except RegistryError as err:
            return ToolResult(ok=False, error=str(err), name=call.name)
        try:
            arguments = call.parsed_arguments()
        except ModelOutputError as err:
            return ToolResult(ok=False, error=str(err), name=call.name)
        limits = [t for t in (fn_tool.timeout, timeout) if t is not None]
        limit = min(limits, default=None)
        if isinstance(fn_tool, FunctionTool):
            return await fn_tool.acall(arguments, timeout=limit, name=call.name, pool=self.pool)
        return await fn_tool.acall(arguments, timeout=limit, name=call.name)

    def executor_stats(self) -> dict[str, Any]:
        """The counts of the pool this registry's tools run on (threads and processes)."""
        return (self.pool or default_tool_pool()).stats()

    async def run_calls(
        self, tool_calls: Sequence[ToolCall], *, timeout: float | None = None
    ) -> list[ToolResult]:
        """Run the calls of one model turn in parallel; results are in call order.

        Each call gets its tool's timeout, capped by ``timeout`` when given.
        """
        if len(tool_calls) == 1:  # no task to schedule: a third of the cost of a lone call
            return [await self.run_call(tool_calls[0], timeout=timeout)]
        return list(await asyncio.gather(*(self.run_call(c, timeout=timeout) for c in tool_calls)))

    async def run_to_messages(
        self, tool_calls: Sequence[ToolCall], *, timeout: float | None = None
    ) -> list[Message]:
        """:meth:`run_calls`, answered as ``tool`` messages to append to the chat."""
        results = await self.run_calls(tool_calls, timeout=timeout)
        return [r.to_message(c.id) for c, r in zip(tool_calls, results, strict=True)]
