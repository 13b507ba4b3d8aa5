"""MCP tool results to :class:`ToolResult` and back.

A value crosses the wire twice over: as text for models that read content, and as
``structuredContent`` for programs. Values that are not JSON objects travel as
``{"result": value}`` under an output schema whose only property is ``result`` (the
convention the Python SDK's own server uses too), so a client can unwrap them exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmagentos.tools.base import ToolResult

if TYPE_CHECKING:
    from mcp_types import CallToolResult, ContentBlock

__all__ = ["RESULT_SCHEMA", "from_call_result", "to_call_result"]

#: The output schema our server declares: any JSON value, wrapped as ``{"result": ...}``.
RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"result": {}},
    "required": ["result"],
}


def _decoded(text: str) -> Any:
    """``text`` parsed as JSON when it is JSON, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _block_value(block: ContentBlock) -> Any:
    if block.type == "text":
        return _decoded(block.text)
    # Images, audio and resources keep every field, so nothing the server sent is lost.
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)


def _block_text(block: ContentBlock) -> str:
    if block.type == "text":
        return block.text
    mime = getattr(block, "mimeType", None) or getattr(block, "mime_type", None)
    return f"[{block.type}{f' {mime}' if mime else ''}]"


def _is_wrapped(schema: Mapping[str, Any] | None) -> bool:
    properties = (schema or {}).get("properties")
    return isinstance(properties, Mapping) and list(properties) == ["result"]


def _content_value(content: Sequence[ContentBlock]) -> Any:
    if not content:
        return None
    if len(content) == 1:
        return _block_value(content[0])
    return [_block_value(block) for block in content]


def from_call_result(
    result: CallToolResult,
    *,
    name: str,
    seconds: float,
    output_schema: Mapping[str, Any] | None = None,
) -> ToolResult:
    """The :class:`ToolResult` for an MCP ``tools/call`` answer.

    ``isError`` becomes ``ok=False`` with the content's text as the error. Otherwise the
    value is the structured content (unwrapped from ``{"result": ...}`` when the output
    schema says so), else the content: JSON text decoded, other blocks as dicts.
    """
    if result.is_error:
        text = "\n".join(_block_text(block) for block in result.content).strip()
        return ToolResult(
            ok=False,
            error=text or "the tool reported an error without a message",
            seconds=seconds,
            name=name,
        )
    structured = result.structured_content
    if structured is None:
        value = _content_value(result.content)
    elif (
        _is_wrapped(output_schema)
        and isinstance(structured, dict)
        and list(structured) == ["result"]
    ):
        value = structured["result"]
    else:
        value = structured
    return ToolResult(ok=True, value=value, seconds=seconds, name=name)


def to_call_result(result: ToolResult) -> CallToolResult:
    """The MCP answer for one of our results: an error is ``isError``, not a protocol error."""
    from mcp_types import CallToolResult, TextContent

    if not result.ok:
        message = result.error or "the tool failed without a message"
        return CallToolResult(content=[TextContent(text=message)], is_error=True)
    value = result.value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return CallToolResult(content=[TextContent(text=text)], structured_content={"result": value})
