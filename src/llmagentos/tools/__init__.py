"""Tools for LLM agents: ``@tool`` functions, their results, and a namespaced registry."""

from llmagentos.tools.base import (
    FunctionTool,
    ToolDefinitionError,
    ToolError,
    ToolRegistry,
    ToolResult,
    tool,
)

__all__ = [
    "FunctionTool",
    "ToolDefinitionError",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "tool",
]
