"""Tools for LLM agents: ``@tool`` functions, their results, a namespaced registry, and the
pool their calls run on."""

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
from llmagentos.tools.pool import ToolPool, default_tool_pool

__all__ = [
    "BaseTool",
    "FunctionTool",
    "ToolDefinitionError",
    "ToolError",
    "ToolPool",
    "ToolRegistry",
    "ToolResult",
    "Workspace",
    "default_tool_pool",
    "tool",
]
