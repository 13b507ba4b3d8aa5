"""Tools for LLM agents: ``@tool`` functions, their results, and a namespaced registry."""

from llmagentos.tools.base import (
    BaseTool,
    FunctionTool,
    ToolDefinitionError,
    ToolError,
    ToolRegistry,
    ToolResult,
    tool,
)

__all__ = [
    "BaseTool",
    "FunctionTool",
    "ToolDefinitionError",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "tool",
]
