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
from llmagentos.tools.files import Workspace

__all__ = [
    "BaseTool",
    "FunctionTool",
    "ToolDefinitionError",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "Workspace",
    "tool",
]
