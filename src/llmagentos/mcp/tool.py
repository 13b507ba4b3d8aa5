"""One tool of an MCP server, wrapped so a :class:`ToolRegistry` can hold and call it."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from jsonschema import exceptions as schema_errors
from jsonschema import validators

from llmagentos.exceptions import ModelOutputError
from llmagentos.llm.types import ToolCall
from llmagentos.tools.base import BaseTool, ToolResult

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = ["MCPTool", "ToolCaller", "local_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_MAX_NAME = 64
_MAX_ERRORS = 5


class ToolCaller(Protocol):
    """What an :class:`MCPTool` calls through: the connection to its server."""

    async def call(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        label: str | None = None,
    ) -> ToolResult: ...


def local_name(remote: str, limit: int = _MAX_NAME, *, hashed: bool = False) -> str:
    """A registry-safe name for the MCP tool ``remote``.

    Characters outside ``[A-Za-z0-9_-]`` become ``_`` (a ``.`` would read as a namespace).
    Names longer than ``limit``, or all names when ``hashed``, are cut to end in a hash of
    the original, so two remote names never meet in one local name.
    """
    name = _UNSAFE.sub("_", remote) or "tool"
    if len(name) <= limit and not hashed:
        return name
    digest = hashlib.sha256(remote.encode()).hexdigest()[:8]
    return f"{name[: max(limit - len(digest) - 1, 1)]}_{digest}"


def _validator(schema: Mapping[str, Any]) -> Validator | None:
    """A validator for the server's input schema, or ``None`` when the schema is unusable."""
    try:
        cls = validators.validator_for(schema)
        cls.check_schema(dict(schema))
        return cls(schema)
    except (schema_errors.SchemaError, schema_errors.UnknownType, TypeError):
        # A broken schema is the server's problem: let the server judge the arguments.
        return None


def _schema_errors(validator: Validator, arguments: dict[str, Any]) -> str | None:
    """``field: message; ...`` for what the schema rejects, or ``None`` when it passes."""
    found = sorted(validator.iter_errors(arguments), key=lambda e: list(map(str, e.path)))
    if not found:
        return None
    parts = [
        f"{'.'.join(str(p) for p in error.path) or 'arguments'}: {error.message:.200}"
        for error in found[:_MAX_ERRORS]
    ]
    more = f"; and {len(found) - _MAX_ERRORS} more" if len(found) > _MAX_ERRORS else ""
    return "arguments invalid: " + "; ".join(parts) + more


class MCPTool(BaseTool):
    """A tool an MCP server offers, callable like a :class:`FunctionTool`.

    Arguments are checked against the server's input schema before they are sent, so a
    model's mistake comes back at once as ``ToolResult(ok=False)`` naming the field.

    Attributes:
        remote_name: the tool's name on the server (``name`` is its registry-safe form).
        input_schema: the schema as the server sent it.
        output_schema: the server's schema of structured results, or ``None``.
    """

    def __init__(
        self,
        caller: ToolCaller,
        *,
        remote_name: str,
        description: str,
        input_schema: Mapping[str, Any],
        output_schema: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.remote_name = remote_name
        limit = _MAX_NAME - (len(namespace) + 1 if namespace else 0)
        self.name = local_name(remote_name, limit)
        self.namespace = namespace
        self.description = description
        self.timeout = timeout
        self.input_schema = dict(input_schema)
        self.output_schema = None if output_schema is None else dict(output_schema)
        self._caller = caller
        self._validator = _validator(self.input_schema)

    @property
    def parameters(self) -> dict[str, Any]:
        """The input schema, less the ``$schema`` marker that only costs the model tokens."""
        return {k: v for k, v in self.input_schema.items() if k != "$schema"}

    def __repr__(self) -> str:
        return f"MCPTool({self.qualified_name!r}, remote={self.remote_name!r})"

    async def acall(
        self,
        arguments: dict[str, Any] | str | None = None,
        *,
        timeout: float | None = None,
        name: str | None = None,
    ) -> ToolResult:
        """Check ``arguments`` (a dict or JSON text) and call the tool on its server.

        Never raises: bad arguments, a timeout, a tool error or a lost connection all
        come back as ``ToolResult(ok=False, error=...)``.
        """
        label = name or self.qualified_name
        start = time.perf_counter()
        if arguments is None:
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = ToolCall(id="", name=label, arguments=arguments).parsed_arguments()
            except ModelOutputError as err:
                return ToolResult(
                    ok=False, error=str(err), seconds=time.perf_counter() - start, name=label
                )
        problem = None if self._validator is None else _schema_errors(self._validator, arguments)
        if problem is not None:
            return ToolResult(
                ok=False, error=problem, seconds=time.perf_counter() - start, name=label
            )
        limit = self.timeout if timeout is None else timeout
        return await self._caller.call(self.remote_name, arguments, timeout=limit, label=label)
